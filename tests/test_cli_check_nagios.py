"""`asyncecho check` under a real Nagios 4 (Debian `nagios4-core`): Nagios
runs as a plain process from a config in a temp dir (never the system
service), runs the check as a service against real peers and failures, and
the state, output and perfdata it recorded are read back from its
status.dat."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import peers

NAGIOS = "/usr/sbin/nagios4"
#: bound on the wait for every service to have been checked once
CHECKED_WITHIN = 20.0

pytestmark = pytest.mark.peer


def require_nagios() -> None:
    if os.access(NAGIOS, os.X_OK):
        return
    message = f"Nagios 4 is not installed ({NAGIOS}); apt-get install -y --no-install-recommends nagios4-core"
    if peers.peers_required():
        pytest.fail(message)
    pytest.skip(message)


def nagios_config(directory: Path, services: dict[str, str]) -> Path:
    """nagios.cfg and its objects, everything in `directory`; one host
    (127.0.0.1, never checked itself) with a service per `services` entry
    (name: the check's arguments after -H)."""
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    (directory / "checkresults").mkdir()
    main = {
        "log_file": "nagios.log",
        "cfg_file": "objects.cfg",
        "object_cache_file": "objects.cache",
        "precached_object_file": "objects.precache",
        "status_file": "status.dat",
        "command_file": "nagios.cmd",
        "lock_file": "nagios.lock",
        "temp_file": "nagios.tmp",
        "state_retention_file": "retention.dat",
        "query_socket": "nagios.qh",
        "check_result_path": "checkresults",
    }
    lines = [f"{key}={directory / value}" for key, value in main.items()]
    lines += [
        f"temp_path={directory}",
        f"nagios_user={user}",
        f"nagios_group={group}",
        "status_update_interval=1",
        "check_external_commands=1",
        "retain_state_information=0",
        "interval_length=1",
        "check_result_reaper_frequency=1",
        "enable_notifications=0",
        "enable_event_handlers=0",
        "enable_flap_detection=0",
        "process_performance_data=0",
        "use_syslog=0",
        "log_rotation_method=n",
        'illegal_macro_output_chars=`~$&|"<>',
    ]
    config = directory / "nagios.cfg"
    config.write_text("\n".join(lines) + "\n")
    days = "\n".join(
        f"  {day} 00:00-24:00"
        for day in ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
    )
    objects = textwrap.dedent(f"""\
        define timeperiod {{
          timeperiod_name 24x7
          alias 24x7
        {days}
        }}
        define command {{
          command_name notify_none
          command_line /bin/true
        }}
        define contact {{
          contact_name nobody
          host_notifications_enabled 0
          service_notifications_enabled 0
          host_notification_period 24x7
          service_notification_period 24x7
          host_notification_options n
          service_notification_options n
          host_notification_commands notify_none
          service_notification_commands notify_none
        }}
        define command {{
          command_name check_dicom
          command_line {sys.executable} -m asyncecho check -H $HOSTADDRESS$ $ARG1$
        }}
        define host {{
          host_name pacs
          address 127.0.0.1
          max_check_attempts 1
          check_period 24x7
          active_checks_enabled 0
          notification_interval 0
          notification_period 24x7
          contacts nobody
        }}
        """)
    for name, args in services.items():
        objects += textwrap.dedent(f"""\
            define service {{
              host_name pacs
              service_description {name}
              check_command check_dicom!{args}
              max_check_attempts 1
              check_interval 3600
              retry_interval 3600
              check_period 24x7
              notification_interval 0
              notification_period 24x7
              contacts nobody
            }}
            """)
    (directory / "objects.cfg").write_text(objects)
    return config


def status_dat(path: Path) -> dict[str, dict[str, str]]:
    """The servicestatus blocks of Nagios' status.dat, by service."""
    services: dict[str, dict[str, str]] = {}
    block: dict[str, str] | None = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if line == "servicestatus {":
            block = {}
        elif line == "}" and block is not None:
            services[block["service_description"]] = block
            block = None
        elif block is not None and "=" in line:
            key, _, value = line.partition("=")
            block[key] = value
    return services


@contextlib.contextmanager
def running_nagios(directory: Path, services: dict[str, str]) -> Iterator[Path]:
    """Nagios in the foreground as our child; each service checked at once
    (a forced check through the external command file); yields status.dat."""
    config = nagios_config(directory, services)
    check = subprocess.run([NAGIOS, "-v", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    log = (directory / "stdout.log").open("wb")
    process = subprocess.Popen(
        [NAGIOS, str(config)], stdout=log, stderr=subprocess.STDOUT, cwd=directory
    )
    try:
        now = int(time.time())
        commands = "".join(
            f"[{now}] SCHEDULE_FORCED_SVC_CHECK;pacs;{name};{now}\n" for name in services
        )
        pipe = command_pipe(directory / "nagios.cmd", process)
        try:
            os.write(pipe, commands.encode())
        finally:
            os.close(pipe)
        yield directory / "status.dat"
    finally:
        peers.terminate(process)
        log.close()


def command_pipe(path: Path, process: subprocess.Popen[bytes]) -> int:
    """The external command file (a FIFO), opened for writing once Nagios'
    command worker reads it: without blocking, so that a Nagios that never
    gets there fails the test instead of hanging it."""
    end = time.monotonic() + CHECKED_WITHIN
    while True:
        assert process.poll() is None, "Nagios exited"
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:  # not made yet, or (ENXIO) no reader yet
            if time.monotonic() > end:
                raise AssertionError(f"cannot write Nagios' command file: {exc}") from None
        time.sleep(0.05)


def wait_checked(status: Path, names: set[str]) -> dict[str, dict[str, str]]:
    end = time.monotonic() + CHECKED_WITHIN
    while True:
        services = status_dat(status) if status.exists() else {}
        checked = {name for name, block in services.items() if block.get("has_been_checked") == "1"}
        if checked >= names or time.monotonic() > end:
            return services
        time.sleep(0.2)


def test_nagios_records_every_state(tmp_path: Path) -> None:
    require_nagios()
    with (
        peers.storescp() as storescp,
        peers.dcmqrscp("QRSCP") as qrscp,
        peers.silent_listener() as silent,
    ):
        refused = peers.closed_port()
        services = {
            "dicom-ok": f"-p {storescp.port} -w 100000 -c 200000",
            "dicom-slow": f"-p {storescp.port} -w 0 -c 100000",
            "dicom-rejected": f"-p {qrscp.port} -aec WRONG-AE",
            "dicom-refused": f"-p {refused}",
            "dicom-silent": f"-p {silent} -t 0.5",
            "dicom-bad-range": f"-p {storescp.port} -w 10:5",
        }
        with running_nagios(tmp_path, services) as status:
            recorded = wait_checked(status, set(services))
    assert set(recorded) == set(services)
    unchecked = [name for name, block in recorded.items() if block["has_been_checked"] != "1"]
    assert unchecked == [], (tmp_path / "nagios.log").read_text()
    state = {name: int(block["current_state"]) for name, block in recorded.items()}
    assert state == {
        "dicom-ok": 0,
        "dicom-slow": 1,
        "dicom-rejected": 2,
        "dicom-refused": 2,
        "dicom-silent": 2,
        "dicom-bad-range": 3,
    }
    output = {name: block["plugin_output"] for name, block in recorded.items()}
    perf = {name: block["performance_data"].split() for name, block in recorded.items()}
    assert output["dicom-ok"].startswith(f"DICOM OK - C-ECHO to ANY-SCP@127.0.0.1:{storescp.port}")
    assert output["dicom-slow"].endswith("time outside the warning range 0")
    assert output["dicom-rejected"].endswith(
        "rejected the association: Rejected Permanent, Service User: Called AE title not recognised"
    )
    assert output["dicom-refused"] == (
        f"DICOM CRITICAL - cannot connect to 127.0.0.1:{refused}: Connection refused"
    )
    assert output["dicom-silent"] == (
        f"DICOM CRITICAL - no answer from ANY-SCP@127.0.0.1:{silent} within 0.5 s (association)"
    )
    assert output["dicom-bad-range"].startswith(
        "DICOM UNKNOWN - usage error: argument -w/--warning"
    )
    # the perfdata as Nagios split it off the line: labels, ranges, minimum
    assert [field.split("=")[0] for field in perf["dicom-ok"]] == [
        "time",
        "connect",
        "associate",
        "echo",
        "release",
    ]
    assert perf["dicom-ok"][0].endswith("s;100000;200000;0")
    assert perf["dicom-slow"][0].endswith("s;0;100000;0")
    assert [field.split("=")[0] for field in perf["dicom-silent"]] == ["time", "connect"]
    assert perf["dicom-bad-range"] == []
