"""The dashboard's page: HTML and a small SVG plotting script of our own (no external assets)."""

PLOTS = (
    # (id, title, x label, y label, stacked)
    ("throughput", "throughput per stage (docs/s)", "seconds", "docs/s", False),
    ("rejections", "rejections by reason (cumulative)", "seconds", "documents", False),
    ("keep_rate", "keep rate per source", "seconds", "share kept", False),
    ("budgets", "budget per source (stacked)", "seconds", "tokens/window", True),
    ("loss", "trainer loss and held-out loss", "training tokens", "loss", False),
    ("value_scores", "value scores by source", "seconds", "mean value", False),
    ("lag", "consumer lag per topic", "seconds", "messages", False),
)

_CHARTS = "\n".join(f'<section><h2>{title}</h2><svg id="{pid}" class="chart" data-chart="{pid}" data-stacked='
                    f'"{int(stacked)}" data-xlabel="{xl}" data-ylabel="{yl}" width="560" height="240"></svg>'
                    f'<div class="legend" id="{pid}-legend"></div></section>'
                    for pid, title, xl, yl, stacked in PLOTS)

_SCRIPT = r"""
const COLORS = ["#4e79a7","#e15759","#76b7b2","#f28e2b","#59a14f","#edc948","#b07aa1","#ff9da7","#9c755f"];
const NS = "http://www.w3.org/2000/svg";
function el(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
function fmt(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e3) return (v / 1e3).toFixed(1) + "k";
  return a >= 10 || Number.isInteger(v) ? v.toFixed(0) : v.toPrecision(3);
}
function stack(series) {
  // Sum the series at each x (sampled together), in the legend's order.
  const out = {}, acc = new Map();
  for (const name of Object.keys(series).sort()) {
    out[name] = series[name].map(([x, y]) => { const s = (acc.get(x) || 0) + y; acc.set(x, s); return [x, s]; });
  }
  return out;
}
function draw(svg, series) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const W = +svg.getAttribute("width"), H = +svg.getAttribute("height"), L = 56, R = 10, T = 10, B = 30;
  if (svg.dataset.stacked === "1") series = stack(series);
  const names = Object.keys(series).sort();
  const pts = names.flatMap(n => series[n]);
  svg.dataset.series = names.length;
  svg.dataset.points = pts.length;
  if (!pts.length) {
    el("text", {x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#999"}, svg).textContent = "no data yet";
    return;
  }
  let x0 = Math.min(...pts.map(p => p[0])), x1 = Math.max(...pts.map(p => p[0]));
  let y0 = Math.min(0, ...pts.map(p => p[1])), y1 = Math.max(...pts.map(p => p[1]));
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) y1 = y0 + 1;
  const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R), sy = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  el("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#888"}, svg);
  el("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#888"}, svg);
  for (const [v, y] of [[y0, sy(y0)], [y1, sy(y1)], [(y0 + y1) / 2, sy((y0 + y1) / 2)]]) {
    el("text", {x: L - 4, y: y + 4, "text-anchor": "end", "font-size": 10}, svg).textContent = fmt(v);
  }
  for (const [v, x] of [[x0, sx(x0)], [x1, sx(x1)]]) {
    el("text", {x: x, y: H - B + 13, "text-anchor": "middle", "font-size": 10}, svg).textContent = fmt(v);
  }
  el("text", {x: (L + W) / 2, y: H - 3, "text-anchor": "middle", "font-size": 11}, svg).textContent =
    svg.dataset.xlabel;
  const legend = document.getElementById(svg.id + "-legend");
  legend.innerHTML = "";
  names.forEach((n, i) => {
    const s = series[n], c = COLORS[i % COLORS.length];
    const line = el("polyline", {fill: "none", stroke: c, "stroke-width": 1.8,
      points: s.map(([x, y]) => sx(x).toFixed(1) + "," + sy(y).toFixed(1)).join(" ")}, svg);
    line.dataset.series = n;
    line.dataset.points = s.length;
    line.dataset.last = s.length ? s[s.length - 1][1] : "";
    if (s.length === 1) el("circle", {cx: sx(s[0][0]), cy: sy(s[0][1]), r: 3, fill: c}, svg);
    const item = document.createElement("span");
    item.innerHTML = '<i style="background:' + c + '"></i>';
    item.appendChild(document.createTextNode(n + " " + (s.length ? fmt(s[s.length - 1][1]) : "")));
    legend.appendChild(item);
  });
}
async function refresh() {
  try {
    const h = await (await fetch("/api/history", {cache: "no-store"})).json();
    for (const svg of document.querySelectorAll("svg.chart")) draw(svg, h.plots[svg.id] || {});
    const procs = document.getElementById("processes");
    procs.innerHTML = "";
    for (const p of h.processes) {
      const s = document.createElement("span");
      s.className = "proc " + p.state;
      s.dataset.process = p.name;
      s.textContent = p.name + ": " + p.state + (p.restarts ? " (" + p.restarts + " restarts)" : "");
      procs.appendChild(s);
    }
    document.getElementById("updated").textContent = h.time ? new Date(h.time * 1000).toLocaleTimeString() : "-";
    document.body.dataset.loaded = "1";
  } catch (e) {
    document.getElementById("updated").textContent = "no answer from the dashboard server";
  }
}
refresh();
setInterval(refresh, 2000);
"""

PAGE = f"""<!doctype html><html><head><meta charset="utf-8"><title>Token Foundry dashboard</title>
<style>
body {{ font-family: sans-serif; margin: 16px; background: #fafafa; }}
main {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(580px, 1fr)); gap: 12px; }}
section {{ background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px; }}
h1 {{ font-size: 20px; margin: 0 0 8px; }} h2 {{ font-size: 14px; margin: 0 0 4px; }}
.legend span {{ font-size: 12px; margin-right: 12px; }}
.legend i {{ display: inline-block; width: 10px; height: 10px; margin-right: 4px; }}
.proc {{ font-size: 12px; padding: 2px 8px; margin-right: 6px; border-radius: 10px; background: #ddd; }}
.proc.running {{ background: #c8e6c9; }} .proc.restarting {{ background: #fff3c4; }}
.proc.exited {{ background: #ffcdd2; }}
</style></head><body>
<h1>Token Foundry <small id="updated">-</small></h1>
<div id="processes"></div>
<main>
{_CHARTS}
</main>
<script>{_SCRIPT}</script>
</body></html>
"""
