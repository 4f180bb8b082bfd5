// The table of every target: sort, filter and page the records in the
// #records data block. Values are put in the page as text only
// (textContent), never as markup: they come from the peers.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("records").textContent);
  var columns = data.columns, strings = data.strings, rows = data.rows, base = data.base;
  var kinds = columns.map(function (c) { return c[2]; });
  var names = columns.map(function (c) { return c[0]; });
  var outcomeColumn = names.indexOf("outcome");
  var successIndex = strings.indexOf("success");
  var tbody = document.getElementById("rows");
  var shown = document.getElementById("shown");
  var filterBox = document.getElementById("filter");
  var outcomeBox = document.getElementById("outcome");
  var sizeBox = document.getElementById("page-size");
  var headers = document.querySelectorAll("#records-table th");

  function text(row, c) {
    var v = row[c];
    if (v === null || v === undefined) return "";
    switch (kinds[c]) {
      case "pooled": return strings[v];
      case "ms": return v.toFixed(2);
      case "status": return "0x" + ("000" + v.toString(16).toUpperCase()).slice(-4);
      case "offset": return new Date(base + v).toISOString().replace("T", " ").replace("Z", "");
      default: return String(v);
    }
  }

  // columns with no value in any record (TLS, in a sweep's records) are left out
  var visible = [];
  for (var c = 0; c < columns.length; c++) {
    var any = false;
    for (var r = 0; r < rows.length && !any; r++) any = rows[r][c] !== null && rows[r][c] !== "";
    visible.push(any || rows.length === 0);
    if (!visible[c]) headers[c].hidden = true;
  }

  var haystack = null; // lower-case text of each row, built on the first search
  function searchText(i) {
    if (haystack === null) {
      haystack = new Array(rows.length);
      for (var r = 0; r < rows.length; r++) {
        var parts = [];
        for (var c = 0; c < columns.length; c++) parts.push(text(rows[r], c));
        haystack[r] = parts.join("\u0001").toLowerCase();
      }
    }
    return haystack[i];
  }

  var order = rows.map(function (_, i) { return i; });
  var sortColumn = -1, sortDescending = false, page = 0, selected = order;

  function sortKey(row, c) {
    var v = row[c];
    if (v === null || v === undefined || v === "") return null;
    return kinds[c] === "pooled" ? strings[v].toLowerCase() : (kinds[c] === "text" ? v.toLowerCase() : v);
  }

  function sortBy(c) {
    sortDescending = sortColumn === c ? !sortDescending : false;
    sortColumn = c;
    var keys = rows.map(function (row) { return sortKey(row, c); });
    var sign = sortDescending ? -1 : 1;
    order = rows.map(function (_, i) { return i; });
    order.sort(function (a, b) {
      var x = keys[a], y = keys[b];
      if (x === y) return a - b;
      if (x === null) return 1; // empty cells last, either way
      if (y === null) return -1;
      return (x < y ? -1 : 1) * sign;
    });
    for (var h = 0; h < headers.length; h++) {
      if (h === c) headers[h].setAttribute("aria-sort", sortDescending ? "descending" : "ascending");
      else headers[h].removeAttribute("aria-sort");
    }
    select();
  }

  function select() {
    var needle = filterBox.value.trim().toLowerCase();
    var wanted = outcomeBox.value;
    var wantedIndex = wanted && wanted !== "!success" ? strings.indexOf(wanted) : -2;
    selected = order.filter(function (i) {
      var o = rows[i][outcomeColumn];
      if (wanted === "!success" && o === successIndex) return false;
      if (wantedIndex !== -2 && o !== wantedIndex) return false;
      return !needle || searchText(i).indexOf(needle) !== -1;
    });
    page = 0;
    draw();
  }

  function draw() {
    var size = parseInt(sizeBox.value, 10);
    var pages = Math.max(1, Math.ceil(selected.length / size));
    page = Math.min(page, pages - 1);
    var start = page * size, end = Math.min(selected.length, start + size);
    var fragment = document.createDocumentFragment();
    for (var k = start; k < end; k++) {
      var row = rows[selected[k]];
      var tr = document.createElement("tr");
      tr.className = row[outcomeColumn] === successIndex ? "good" : "bad";
      for (var c = 0; c < columns.length; c++) {
        if (!visible[c]) continue;
        var td = document.createElement("td");
        td.className = c === outcomeColumn ? "outcome-cell" : (names[c] === "detail" ? "detail" : kinds[c]);
        td.textContent = text(row, c);
        tr.appendChild(td);
      }
      fragment.appendChild(tr);
    }
    tbody.replaceChildren(fragment);
    var of = selected.length === rows.length ? "" : " (filtered from " + rows.length.toLocaleString("en") + ")";
    shown.textContent = (selected.length ? (start + 1).toLocaleString("en") + "\u2013" + end.toLocaleString("en") : "0") +
      " of " + selected.length.toLocaleString("en") + of;
    document.getElementById("prev").disabled = page === 0;
    document.getElementById("next").disabled = page >= pages - 1;
  }

  for (var h = 0; h < headers.length; h++) {
    headers[h].addEventListener("click", sortBy.bind(null, h));
  }
  var pending = null;
  filterBox.addEventListener("input", function () {
    clearTimeout(pending);
    pending = setTimeout(select, 150);
  });
  outcomeBox.addEventListener("change", select);
  sizeBox.addEventListener("change", draw);
  document.getElementById("prev").addEventListener("click", function () { page -= 1; draw(); });
  document.getElementById("next").addEventListener("click", function () { page += 1; draw(); });
  // the outcome and implementation buttons above: filter the table and go to it
  var buttons = document.querySelectorAll("button.filter");
  for (var b = 0; b < buttons.length; b++) {
    buttons[b].addEventListener("click", function (event) {
      var button = event.currentTarget;
      outcomeBox.value = button.dataset.outcome || "";
      filterBox.value = button.dataset.text || "";
      select();
      document.getElementById("targets").scrollIntoView();
    });
  }
  select();
  document.documentElement.dataset.ready = String(rows.length);
})();
