// Upload page: drag and drop of files and folders, and a progress bar. Without this script the
// form still works (a plain multipart POST). No build step, no inline script (CSP: script-src 'self').
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.FormData || !window.XMLHttpRequest) { return; }
  var zone = document.getElementById("dropzone");
  var list = document.getElementById("dropped");
  var bar = document.getElementById("upload-progress");
  var status = document.getElementById("upload-status");
  var button = document.getElementById("upload-submit");
  var dropped = []; // [File, path in repo]
  form.setAttribute("data-js", "on"); // uploads go through XMLHttpRequest (progress shown)

  function show(text) { status.textContent = text; }

  function addFile(file, path) {
    dropped.push([file, path]);
    var li = document.createElement("li");
    li.textContent = path + " (" + file.size + " bytes)";
    list.appendChild(li);
  }

  function readEntry(entry, prefix, pending) {
    if (entry.isFile) {
      pending.count += 1;
      entry.file(function (file) { addFile(file, prefix + file.name); pending.done(); },
                 function () { pending.done(); });
    } else if (entry.isDirectory) {
      var reader = entry.createReader();
      pending.count += 1;
      var readBatch = function () {
        reader.readEntries(function (entries) {
          if (!entries.length) { pending.done(); return; }
          entries.forEach(function (e) { readEntry(e, prefix + entry.name + "/", pending); });
          readBatch();
        }, function () { pending.done(); });
      };
      readBatch();
    }
  }

  zone.addEventListener("dragover", function (ev) { ev.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", function () { zone.classList.remove("over"); });
  zone.addEventListener("drop", function (ev) {
    ev.preventDefault();
    zone.classList.remove("over");
    var items = ev.dataTransfer.items;
    var pending = { count: 0, done: function () { this.count -= 1; if (this.count === 0) { show(dropped.length + " file(s) ready"); } } };
    if (items && items.length && items[0].webkitGetAsEntry) {
      for (var i = 0; i < items.length; i++) {
        var entry = items[i].webkitGetAsEntry();
        var file = entry ? null : items[i].getAsFile();
        if (entry) { readEntry(entry, "", pending); } else if (file) { addFile(file, file.name); }
      }
      if (pending.count === 0) { show(dropped.length + " file(s) ready"); }
    } else {
      Array.prototype.forEach.call(ev.dataTransfer.files, function (f) { addFile(f, f.name); });
      show(dropped.length + " file(s) ready");
    }
  });

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var data = new FormData(form);
    dropped.forEach(function (pair) { data.append("files", pair[0], pair[1]); });
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.getAttribute("action"));
    xhr.setRequestHeader("Accept", "application/json");
    bar.hidden = false;
    button.disabled = true;
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        bar.value = Math.round(100 * e.loaded / e.total);
        show("Uploading: " + bar.value + "%");
      }
    });
    xhr.upload.addEventListener("load", function () { show("Committing…"); });
    xhr.addEventListener("load", function () {
      var body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      if (xhr.status === 200 && body && body.url) {
        show("Done.");
        window.location.assign(body.url);
        return;
      }
      button.disabled = false;
      show("Upload failed: " + ((body && body.error) || ("HTTP " + xhr.status)) + ". Nothing was committed.");
    });
    xhr.addEventListener("error", function () {
      button.disabled = false;
      show("Upload failed: the connection broke. Nothing was committed.");
    });
    xhr.send(data);
  });
})();
