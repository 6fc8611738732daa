// Sign-in shared by the marketing and admin pages (campaigns, quality): the token lives in this tab's
// sessionStorage (shared with the staff page), every call is a POST with it, refusals read in Chinese.
// A file of its own: the Content-Security-Policy allows no inline script.
"use strict";
const Signin = (() => {
  const KEY = "nbp.token";
  const BANK = "nbp.bank";
  const $ = (id) => document.getElementById(id);
  let page = null;

  // page: {path, sections (ids hidden while signed out), errors ({status: text}; a text ending in
  // "：" is followed by the service's message), request () -> extra body fields, render (body)}
  function showLogin(msg) {
    $("login").hidden = false; $("who").hidden = true;
    for (const id of page.sections) $(id).hidden = true;
    $("status").textContent = msg || "";
    $("status").className = msg ? "error" : "muted";
  }

  async function load() {
    const token = sessionStorage.getItem(KEY);
    if (!token) { showLogin(); return; }
    $("login").hidden = true; $("who").hidden = false;
    $("status").textContent = "加载中…"; $("status").className = "muted";
    const bank = sessionStorage.getItem(BANK);
    const req = Object.assign(bank ? { bank_code: bank } : {}, page.request ? page.request() : {});
    let resp, body;
    try {
      resp = await fetch(page.path, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token },
        body: JSON.stringify(req),
      });
      body = await resp.json();
    } catch (e) {
      $("status").textContent = "无法连接服务，请稍后再试。"; $("status").className = "error"; return;
    }
    if (!resp.ok) {
      if (resp.status === 401) { sessionStorage.removeItem(KEY); showLogin("令牌无效或已过期，请重新登录。"); return; }
      const base = page.errors[resp.status] || "出错了（" + resp.status + "）：";
      const err = Array.isArray(body) ? body[0] : body;
      showLogin(base + (base.endsWith("：") && err && err.error ? err.error : ""));
      return;
    }
    $("status").textContent = "";
    page.render(body);
  }

  function start(p) {
    page = p;
    $("login-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const t = $("token").value.trim();
      if (!t) return;
      sessionStorage.setItem(KEY, t); $("token").value = "";
      const b = $("bank").value.trim();
      if (b) sessionStorage.setItem(BANK, b); else sessionStorage.removeItem(BANK);
      if (page.signedIn) page.signedIn();
      load();
    });
    $("logout").addEventListener("click", () => { sessionStorage.removeItem(KEY); sessionStorage.removeItem(BANK); showLogin("已退出。"); });
    // A link may carry "#token=…&bank=…" (a fragment is never sent to the server); it moves to
    // sessionStorage and the fragment is cleared at once.
    const frag = new URLSearchParams(location.hash.slice(1));
    if (frag.get("token")) sessionStorage.setItem(KEY, frag.get("token"));
    if (frag.get("bank")) sessionStorage.setItem(BANK, frag.get("bank"));
    if (location.hash) history.replaceState(null, "", location.pathname);
    load();
  }

  return { start, load };
})();
