// The data-quality page's script (a file of its own: the Content-Security-Policy allows no inline script);
// sign-in and the call to /quality are signin.js's.
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const $ = (id) => document.getElementById(id);
let branch = null;  // the branch shown (null: the whole bank)

function text(el, s) { el.textContent = s; return el; }
function node(tag, cls, s) { const e = document.createElement(tag); if (cls) e.className = cls; if (s !== undefined) e.textContent = s; return e; }
function svg(tag, attrs) { const e = document.createElementNS(SVG, tag); for (const k in attrs) e.setAttribute(k, attrs[k]); return e; }
function pct(p) { return p === null || p === undefined ? "—" : (p * 100).toFixed(1) + "%"; }
function points(p) {
  if (p === null || p === undefined) return node("span", "muted", "—");
  const r = Math.round(p * 1000) / 10;  // percentage points, one decimal (no "-0.0")
  if (r === 0) return node("span", null, "0.0 个百分点");
  return node("span", r > 0 ? "up" : "down", (r > 0 ? "+" : "") + r.toFixed(1) + " 个百分点");
}
function num(n) { return n === null || n === undefined ? "—" : Math.round(n).toLocaleString("zh-CN"); }
function shade(p) { return p === null || p === undefined ? "" : "q" + Math.min(4, Math.floor(p * 5)); }
function colour(i) { return i === 0 ? "#000000" : COLOURS[(i - 1) % COLOURS.length]; }

// Completeness per field over the export dates: one line each, every field together in bold black.
function chart(body) {
  const el = $("chart"); el.replaceChildren();
  const W = 640, H = 300, L = 48, R = 16, T = 12, B = 36;
  const n = body.dates.length;
  const x = (i) => n === 1 ? (L + W - R) / 2 : L + i * (W - L - R) / (n - 1);
  const y = (v) => T + (1 - v) * (H - T - B);
  for (let g = 0; g <= 4; g++) {
    const v = g / 4;
    el.appendChild(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: g ? "grid" : "axis" }));
    el.appendChild(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" })).textContent = (v * 100) + "%";
  }
  const every = Math.max(1, Math.ceil(n / 8));
  body.dates.forEach((d, i) => {
    const anchor = n > 1 && i === n - 1 ? "end" : n > 1 && i === 0 ? "start" : "middle";
    if (i % every === 0 || i === n - 1) el.appendChild(svg("text", { x: x(i), y: H - B + 16, "text-anchor": anchor })).textContent = d;
  });
  const legend = $("legend"); legend.replaceChildren();
  body.trend.forEach((t, k) => {
    const c = colour(k), width = k === 0 ? 3.5 : 1.8;
    const pts = t.completeness.map((v, i) => v === null ? null : [x(i), y(v)]).filter((p) => p);
    if (pts.length > 1) el.appendChild(svg("polyline", { points: pts.map((p) => p.join(",")).join(" "), fill: "none", stroke: c, "stroke-width": width }));
    pts.forEach((p) => el.appendChild(svg("circle", { cx: p[0], cy: p[1], r: k === 0 ? 4 : 3, fill: c })));
    const li = node("li"); const sw = node("span", "sw"); sw.style.background = c;
    li.appendChild(sw); li.appendChild(document.createTextNode(t.zh + "  " + pct(t.completeness[t.completeness.length - 1])));
    legend.appendChild(li);
  });
}

function trendTable(body) {
  const head = $("trend").tHead; head.replaceChildren();
  const hr = node("tr"); ["字段", "适用客户"].forEach((h) => hr.appendChild(node("th", null, h)));
  body.dates.forEach((d) => hr.appendChild(node("th", "num", d)));
  hr.appendChild(node("th", "num", "较上期变化"));
  head.appendChild(hr);
  const applies = Object.fromEntries(body.fields.map((f) => [f.field, f.applies_zh]));
  const rows = $("trend").tBodies[0]; rows.replaceChildren();
  body.trend.forEach((t, k) => {
    const tr = node("tr", k === 0 ? "all" : null);
    tr.appendChild(node("td", null, t.zh));
    tr.appendChild(node("td", "muted", k === 0 ? "" : applies[t.field] || ""));
    t.completeness.forEach((v) => tr.appendChild(node("td", "num " + shade(v), pct(v))));
    const c = t.completeness, td = node("td", "num");
    td.appendChild(points(c.length > 1 && c[c.length - 1] !== null && c[c.length - 2] !== null ? c[c.length - 1] - c[c.length - 2] : null));
    tr.appendChild(td); rows.appendChild(tr);
  });
}

function branchTable(body) {
  const head = $("branches").tHead; head.replaceChildren();
  const hr = node("tr");
  ["支行号", "支行名称"].forEach((h) => hr.appendChild(node("th", null, h)));
  ["总体完整率", "较上期变化"].forEach((h) => hr.appendChild(node("th", "num", h)));
  body.fields.forEach((f) => hr.appendChild(node("th", "num", f.zh)));
  head.appendChild(hr);
  const rows = $("branches").tBodies[0]; rows.replaceChildren();
  body.branches.forEach((b) => {
    const tr = node("tr", body.branch_id ? null : "click"); tr.dataset.branch = b.branch_id;
    tr.appendChild(node("td", null, b.branch_id));
    tr.appendChild(node("td", null, b.name || "—"));
    tr.appendChild(node("td", "num " + shade(b.completeness), pct(b.completeness)));
    const td = node("td", "num"); td.appendChild(points(b.change)); tr.appendChild(td);
    body.fields.forEach((f) => tr.appendChild(node("td", "num " + shade(b.fields[f.field]), pct(b.fields[f.field]))));
    if (!body.branch_id) tr.addEventListener("click", () => { branch = b.branch_id; Signin.load(); });
    rows.appendChild(tr);
  });
}

function asideTable(body) {
  const rows = $("aside").tBodies[0]; rows.replaceChildren();
  body.set_aside.forEach((a) => {
    const tr = node("tr");
    tr.appendChild(node("td", null, a.table));
    tr.appendChild(node("td", a.rule ? null : "muted", a.rule || "（无剔除）"));
    tr.appendChild(node("td", "num", num(a.rows)));
    tr.appendChild(node("td", "num", num(a.rows_read)));
    tr.appendChild(node("td", "num", a.rows_read ? pct(a.rows / a.rows_read) : "—"));
    rows.appendChild(tr);
  });
  $("aside-card").hidden = !body.set_aside.length;
}

function render(body) {
  const where = (body.bank_code ? "银行 " + body.bank_code + " · " : "") + (body.branch_id ? "支行 " + body.branch_id : "全行");
  text($("result-title"), "客户信息完整率趋势（" + where + "）");
  if (!body.dates.length) {
    text($("result-sub"), "尚无数据质量记录：每次 nbp ingest 导入数据时记录一次。");
    $("result").hidden = false; $("branch-card").hidden = true; $("aside-card").hidden = true; return;
  }
  text($("result-sub"), "共 " + body.dates.length + " 次导入，最新数据日期 " + body.dates[body.dates.length - 1]
    + "。跟踪 " + body.fields.length + " 个字段；字段只对适用的客户计算。");
  $("scope").hidden = !body.branch_id || !branch;
  chart(body); trendTable(body); branchTable(body); asideTable(body);
  $("result").hidden = false; $("branch-card").hidden = false;
}

$("all-branches").addEventListener("click", () => { branch = null; Signin.load(); });
Signin.start({
  path: "/quality",
  sections: ["result", "branch-card", "aside-card"],
  errors: { 403: "该令牌无权查看：", 404: "未找到：", 422: "请求有误：", 503: "服务暂不可用：" },
  request: () => (branch ? { branch_id: branch } : {}),
  signedIn: () => { branch = null; },
  render,
});
