// The staff page's script (a file of its own: the Content-Security-Policy allows no inline script).
"use strict";
const KEY = "nbp.token";
const $ = (id) => document.getElementById(id);

function text(el, s) { el.textContent = s; return el; }
function node(tag, cls, s) { const e = document.createElement(tag); if (cls) e.className = cls; if (s !== undefined) e.textContent = s; return e; }
function pct(p) { return (p * 100).toFixed(p < 0.01 ? 2 : 1) + "%"; }
// money in yuan: 万元 from ten thousand on, as the reasons write it
function money(v) {
  if (v === null || v === undefined) return "—";
  return Math.abs(v) >= 10000 ? (v / 10000).toFixed(1) + "万元" : Math.round(v).toLocaleString("zh-CN") + "元";
}
function month(iso) { return iso.slice(0, 4) + "年" + Number(iso.slice(5, 7)) + "月"; }
function months(n) {
  if (n === null || n === undefined) return "—";
  const y = Math.floor(n / 12), m = n % 12;
  return (y ? y + "年" : "") + (m || !y ? m + "个月" : "");
}
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  Object.entries(attrs || {}).forEach(([k, v]) => e.setAttribute(k, v));
  return e;
}

function showLogin(msg) {
  $("login").hidden = false; $("search").hidden = true; $("who").hidden = true; $("result").hidden = true;
  text($("status"), msg || "");
  $("status").className = msg ? "error" : "muted";
}
function showSearch() {
  $("login").hidden = true; $("search").hidden = false; $("who").hidden = false;
  text($("who-text"), "已登录");
}

const ERRORS = {
  401: "令牌无效或已过期，请重新登录。",
  403: "无权查看该客户（仅可查看本支行客户）。",
  404: "未找到该客户号。",
  422: "请求有误：",
  503: "服务暂不可用：",
};

async function lookup(customerId) {
  const token = sessionStorage.getItem(KEY);
  if (!token) { showLogin(); return; }
  text($("status"), "查询中…"); $("status").className = "muted"; $("result").hidden = true;
  let resp, body;
  try {
    resp = await fetch("/profile", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token },
      body: JSON.stringify({ customer_id: customerId, lang: "zh" }),
    });
    body = await resp.json();
  } catch (e) {
    text($("status"), "无法连接服务，请稍后再试。"); $("status").className = "error"; return;
  }
  if (!resp.ok) {
    if (resp.status === 401) { sessionStorage.removeItem(KEY); showLogin(ERRORS[401]); return; }
    const base = ERRORS[resp.status] || "出错了（" + resp.status + "）：";
    text($("status"), base + ([422, 503].includes(resp.status) && body && body.error ? body.error : ""));
    $("status").className = "error"; return;
  }
  render(body);
}

const TREND = { up: ["↑", "上升"], down: ["↓", "下降"], same: ["→", "持平"] };

// A sparkline of up to 12 monthly figures as inline SVG, scaled from the lowest to the highest
// figure (a gap where a month is unknown); beside it the latest figure and the range, and the
// title of each point names its month and value.
function sparkline(points, label) {
  const box = node("div", "spark");
  const vals = points.map((p) => p.value).filter((v) => v !== null && v !== undefined);
  if (!vals.length) { box.appendChild(node("span", "muted", "暂无数据")); return box; }
  const W = 180, H = 44, pad = 4;
  const lo = Math.min(...vals), hi = Math.max(...vals);
  const x = (i) => pad + (points.length > 1 ? i * (W - 2 * pad) / (points.length - 1) : (W - 2 * pad) / 2);
  const y = (v) => H - pad - (hi > lo ? (v - lo) * (H - 2 * pad) / (hi - lo) : (H - 2 * pad) / 2);
  const s = svg("svg", { class: "sparkline", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": label });
  s.appendChild(svg("title")).textContent = label;
  let run = [];
  const flush = () => { if (run.length) s.appendChild(svg("polyline", { points: run.join(" ") })); run = []; };
  points.forEach((p, i) => {
    if (p.value === null || p.value === undefined) { flush(); return; }
    run.push(x(i).toFixed(1) + "," + y(p.value).toFixed(1));
    const dot = s.appendChild(svg("circle", { cx: x(i).toFixed(1), cy: y(p.value).toFixed(1), r: i === points.length - 1 ? 3 : 1.5 }));
    dot.appendChild(svg("title")).textContent = p.month + "：" + money(p.value);
  });
  flush();
  box.appendChild(s);
  const last = points[points.length - 1];
  const side = box.appendChild(node("div", "spark-last"));
  side.appendChild(node("div", null, last.month + "：" + money(last.value)));
  side.appendChild(node("div", "muted", "最低 " + money(lo) + " · 最高 " + money(hi)));
  return box;
}

function renderProfile(body) {
  const t = body.tier;
  const badge = $("tier");
  badge.className = "tier" + (t && t.level !== null ? " tier-" + Math.min(t.level, 3) : "");
  const trend = TREND[body.tier_trend];
  const first = body.tier_history[0];
  text(badge, t && t.tier ? t.tier + (trend ? " " + trend[0] : "") : "未分层");
  const since = trend && first ? "较" + month(first.as_of) + "（" + first.tier + "）" + trend[1] : "";
  badge.title = since;
  text($("tier-score"), t && t.score !== null ? "综合贡献度 " + t.score.toFixed(1) + (since ? "，" + since : "") : "");
  text($("tenure"), "客龄 " + months(body.tenure_months));
  text($("as-of"), body.as_of ? "数据截至 " + body.as_of : "");
  const chips = $("holdings"); chips.replaceChildren();
  body.holdings.forEach((h) => chips.appendChild(node("span", "chip chip-" + h.kind, h.name + (h.kind === "loan" && h.count > 1 ? " ×" + h.count : ""))));
  if (!body.holdings.length) chips.appendChild(node("span", "muted", "暂无"));
  $("spark-balance").replaceChildren(sparkline(body.months.map((m) => ({ month: m.month, value: m.balance })), "存款月日均"));
  $("spark-turnover").replaceChildren(sparkline(body.months.map((m) => ({ month: m.month, value: m.turnover })), "月交易流水"));
  const contacts = $("contacts"); contacts.replaceChildren();
  if (body.contacts.length) {
    const table = node("table", "contacts");
    const head = table.appendChild(node("tr"));
    ["日期", "产品", "渠道", "结果"].forEach((h) => head.appendChild(node("th", null, h)));
    body.contacts.forEach((c) => {
      const tr = table.appendChild(node("tr"));
      [c.contact_date, c.product_name, c.channel_name || "—", c.outcome_name || "—"].forEach((v) => tr.appendChild(node("td", null, v)));
      if (c.outcome) tr.lastChild.className = "outcome-" + c.outcome;
    });
    contacts.appendChild(table);
  } else {
    contacts.appendChild(node("span", "muted", "暂无联系记录"));
  }
  const missing = $("missing"); missing.replaceChildren();
  if (body.missing_fields === null) missing.appendChild(node("span", "muted", "暂未统计"));
  else if (!body.missing_fields.length) missing.appendChild(node("span", "muted", "信息完整"));
  else body.missing_fields.forEach((f) => missing.appendChild(node("span", "chip chip-missing", f.name)));
  const notes = $("notes"); notes.replaceChildren();
  body.notes.forEach((n) => notes.appendChild(node("li", null, n)));
}

function render(body) {
  text($("status"), "");
  // the bank (a federation's member bank) and branch the answer is about
  const where = [body.bank_code ? "银行 " + body.bank_code : "", body.branch_id ? "支行 " + body.branch_id : ""]
    .filter(Boolean).join(" · ");
  text($("result-title"), "客户 " + body.customer_id + (where ? "（" + where + "）" : ""));
  renderProfile(body);
  const box = $("products"); box.replaceChildren();
  if (body.products_problem) box.appendChild(node("p", "reason-off", body.products_problem));
  body.products.forEach((p, i) => {
    const off = !!p.reason_not_offered;
    const div = node("div", "product" + (off ? " off" : ""));
    div.dataset.product = p.product;
    div.appendChild(node("h3", null, (off ? "" : (i + 1) + ". ") + p.product_name));
    const fig = node("div", "figures");
    if (p.propensity !== null) {
      fig.appendChild(node("span", null, "倾向分 " + pct(p.propensity)));
      if (p.percentile_in_branch !== null) fig.appendChild(node("span", null, "网点百分位 " + Math.round(p.percentile_in_branch)));
    }
    div.appendChild(fig);
    if (off) div.appendChild(node("p", "reason-off", "暂不推荐：" + p.reason_not_offered));
    if (!off && p.reasons && p.reasons.length) {  // a product not offered shows why, not reasons
      div.appendChild(node("div", "muted", "推荐理由："));
      const ul = node("ul", "reasons");
      p.reasons.forEach((r) => ul.appendChild(node("li", null, r)));
      div.appendChild(ul);
    }
    box.appendChild(div);
  });
  $("result").hidden = false;
}

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const t = $("token").value.trim();
  if (!t) return;
  sessionStorage.setItem(KEY, t); $("token").value = ""; text($("status"), ""); showSearch();
});
$("logout").addEventListener("click", () => { sessionStorage.removeItem(KEY); showLogin("已退出。"); });
$("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const c = $("customer").value.trim();
  if (c) lookup(c);
});

// A link may carry "#token=…&customer=…" (kept out of server logs: a fragment is never sent);
// the token moves to sessionStorage and the fragment is cleared at once.
(function init() {
  const frag = new URLSearchParams(location.hash.slice(1));
  if (frag.get("token")) sessionStorage.setItem(KEY, frag.get("token"));
  if (location.hash) history.replaceState(null, "", location.pathname);
  if (!sessionStorage.getItem(KEY)) { showLogin(); return; }
  showSearch();
  const c = frag.get("customer");
  if (c) { $("customer").value = c; lookup(c); }
})();
