// The staff page's script (a file of its own: the Content-Security-Policy allows no inline script).
"use strict";
const KEY = "nbp.token";
const $ = (id) => document.getElementById(id);

function text(el, s) { el.textContent = s; return el; }
function node(tag, cls, s) { const e = document.createElement(tag); if (cls) e.className = cls; if (s !== undefined) e.textContent = s; return e; }
function pct(p) { return (p * 100).toFixed(p < 0.01 ? 2 : 1) + "%"; }

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
    resp = await fetch("/hints", {
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

function render(body) {
  text($("status"), "");
  const first = body.products[0] || {};
  // the bank (a federation's member bank) and branch the answer is about
  const where = [body.bank_code ? "银行 " + body.bank_code : "", first.branch_id ? "支行 " + first.branch_id : ""]
    .filter(Boolean).join(" · ");
  text($("result-title"), "客户 " + body.customer_id + (where ? "（" + where + "）" : ""));
  const box = $("products"); box.replaceChildren();
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
