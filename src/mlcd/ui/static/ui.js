// mlcd ui: draws the charts a page carries as JSON (no inline scripts: the CSP forbids them)
// and filters the column picker. Plotly comes from /static/plotly.min.js.
"use strict";

function readJson(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}

function bandTraces(name, s) {
  const traces = [];
  if (s.sampled) {
    traces.push({x: s.steps, y: s.highs, mode: "lines", line: {width: 0}, showlegend: false,
                 hoverinfo: "skip", name: name + " max"});
    traces.push({x: s.steps, y: s.lows, mode: "lines", line: {width: 0}, fill: "tonexty",
                 fillcolor: "rgba(31,119,180,0.15)", showlegend: false, hoverinfo: "skip",
                 name: name + " min"});
  }
  traces.push({x: s.steps, y: s.values, mode: "lines", name: name});
  return traces;
}

function layout(title) {
  return {title: {text: title, font: {size: 13}}, margin: {t: 32, r: 10, b: 32, l: 48},
          height: 260, xaxis: {title: {text: "step"}}};
}

function drawRun() {
  const data = readJson("series-data");
  if (!data || !window.Plotly) return;
  document.querySelectorAll(".chart[data-series]").forEach((node) => {
    const key = node.getAttribute("data-series");
    Plotly.newPlot(node, bandTraces(key, data.series[key]), layout(key),
                   {displaylogo: false, responsive: true});
  });
}

function drawCompare() {
  const data = readJson("compare-data");
  if (!data || !window.Plotly) return;
  const box = document.getElementById("compare-curves");
  Object.keys(data.curves).forEach((metric) => {
    const node = document.createElement("div");
    node.className = "chart";
    node.setAttribute("data-metric", metric);
    box.appendChild(node);
    const traces = [];
    Object.keys(data.curves[metric]).forEach((run) => {
      const s = data.curves[metric][run];
      traces.push({x: s.steps, y: s.values, mode: "lines+markers", name: run});
    });
    Plotly.newPlot(node, traces, layout(metric), {displaylogo: false, responsive: true});
  });
  const pc = data.parcoords;
  const target = document.getElementById("parcoords");
  if (pc && target && pc.dims.length) {
    const dims = pc.dims.map((d, i) => ({label: d, values: pc.rows.map((r) => r[i])}));
    Plotly.newPlot(target, [{type: "parcoords", dimensions: dims}],
                   {margin: {t: 40, r: 40, b: 20, l: 60}, height: 360},
                   {displaylogo: false, responsive: true});
  }
}

function drawMonitoring() {
  const data = readJson("monitor-data");
  if (!data || !window.Plotly) return;
  document.querySelectorAll(".monitor-chart").forEach((node) => {
    const chart = data[node.getAttribute("data-model")];
    if (node.getAttribute("data-part") === "share") {
      Plotly.newPlot(node, [{x: chart.share.x, y: chart.share.y, mode: "lines+markers",
                             name: "drifted share"}],
                     Object.assign(layout("share of columns drifted"), {xaxis: {}}),
                     {displaylogo: false, responsive: true});
      return;
    }
    const traces = Object.keys(chart.columns).map((column) => ({
      x: chart.columns[column].x, y: chart.columns[column].y, mode: "lines+markers", name: column,
    }));
    Plotly.newPlot(node, traces, Object.assign(layout("drift score per column"), {xaxis: {}}),
                   {displaylogo: false, responsive: true});
  });
}

function pickerSearch() {
  document.querySelectorAll(".picker-search").forEach((input) => {
    input.addEventListener("input", () => {
      const text = input.value.toLowerCase();
      input.form.querySelectorAll("label.key").forEach((label) => {
        label.style.display = label.textContent.toLowerCase().includes(text) ? "" : "none";
      });
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  drawRun();
  drawCompare();
  drawMonitoring();
  pickerSearch();
});
