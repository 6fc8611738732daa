// The campaigns page's script (a file of its own: the Content-Security-Policy allows no inline script);
// sign-in and the call to /campaigns are signin.js's.
"use strict";
const $ = (id) => document.getElementById(id);

function text(el, s) { el.textContent = s; return el; }
function node(tag, cls, s) { const e = document.createElement(tag); if (cls) e.className = cls; if (s !== undefined) e.textContent = s; return e; }
function pct(p, sign) {
  if (p === null || p === undefined) return "—";
  const s = (p * 100).toFixed(Math.abs(p) < 0.1 ? 2 : 1) + "%";
  return sign && p > 0 ? "+" + s : s;
}
function num(n) { return n === null || n === undefined ? "—" : Math.round(n).toLocaleString("zh-CN"); }

// The difference's 95% interval as a bar on a common scale, with 0 marked.
function interval(d, scale) {
  const box = node("div", "ci");
  if (d.estimate === null || d.ci_low === null) return box;
  const at = (v) => (50 + 50 * v / scale) + "%";
  const zero = node("div", "zero"); zero.style.left = at(0); box.appendChild(zero);
  const bar = node("div", "bar"); bar.style.left = at(d.ci_low);
  bar.style.width = (50 * (d.ci_high - d.ci_low) / scale) + "%"; box.appendChild(bar);
  const dot = node("div", "dot"); dot.style.left = at(d.estimate); box.appendChild(dot);
  return box;
}

function render(body) {
  text($("result-title"), "营销活动" + (body.bank_code ? "（银行 " + body.bank_code + "）" : ""));
  text($("result-sub"), "数据截至导出日期 " + (body.export_date || "—") + "；每组少于 " + body.min_arm_customers
    + " 名客户的活动无法判断效果。共 " + body.campaigns.length + " 个活动。");
  const rows = $("campaigns").tBodies[0]; rows.replaceChildren();
  const ends = body.campaigns.flatMap((c) => [c.difference.ci_low, c.difference.ci_high]).filter((v) => v !== null);
  const scale = Math.max(0.01, ...ends.map(Math.abs)) * 1.1;
  body.campaigns.forEach((c) => {
    const tr = node("tr"); tr.dataset.campaign = c.campaign_id;
    const t = c.arms.treatment, k = c.arms.control, d = c.difference;
    tr.appendChild(node("td", null, c.campaign_id));
    tr.appendChild(node("td", "nowrap", c.product_name));
    tr.appendChild(node("td", "nowrap", c.list_date || "—"));
    tr.appendChild(node("td", "num", num(t.customers)));
    tr.appendChild(node("td", "num", num(k.customers)));
    tr.appendChild(node("td", "num", pct(t.rate)));
    tr.appendChild(node("td", "num", pct(k.rate)));
    const diff = node("td", "diff", d.estimate === null ? "—"
      : pct(d.estimate, true) + "（" + pct(d.ci_low, true) + " 至 " + pct(d.ci_high, true) + "）");
    diff.appendChild(interval(d, scale));
    tr.appendChild(diff);
    tr.appendChild(node("td", "num", c.incremental_uptakes === null ? "—" : c.incremental_uptakes.toFixed(1)));
    const v = node("td");
    v.appendChild(node("span", "verdict v-" + c.verdict, c.verdict_zh));
    if (c.verdict === "window_open") v.appendChild(node("div", "note", "已观察 " + c.days_observed + "/" + c.horizon_days + " 天"));
    if (c.note_zh) v.appendChild(node("div", "note", c.note_zh));
    tr.appendChild(v);
    rows.appendChild(tr);
  });
  if (!body.campaigns.length) {
    const tr = node("tr"); const td = node("td", "muted", "尚无营销活动：用 nbp targets 或 /targets 下发名单后，这里会显示其效果。");
    td.colSpan = 10; tr.appendChild(td); rows.appendChild(tr);
  }
  $("result").hidden = false;
}

Signin.start({
  path: "/campaigns",
  sections: ["result"],
  errors: { 403: "该令牌无权查看营销活动（仅限营销和管理角色）。", 404: "未找到该银行。", 422: "请求有误：", 503: "服务暂不可用：" },
  render,
});
