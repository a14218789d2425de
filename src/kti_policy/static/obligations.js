/* kti-policy playground, tab "Requests and deadlines": the obligations register's open and overdue
 * items, soonest due first (GET /v1/obligations, role query). A separate script beside
 * playground.js: it reads the same API key (sessionStorage) and follows the page's language (the
 * <html lang> attribute playground.js sets). Server text goes in as text nodes only.
 */
"use strict";

(function () {
  const KEY_STORE = "kti.playground.key";
  const T = {
    en: {
      tab: "Requests and deadlines",
      help: "Open data subject requests and deletion tasks, the most urgent first. Overdue items are marked; nothing here shows a subject id, only your reference.",
      only_overdue: "Only overdue", reload: "Refresh",
      due: "Due", reference: "Reference", what: "What", system: "System", status: "Status",
      received: "Received", overdue: "overdue", none: "Nothing open.", loading: "Loading…",
      count: "{open} open, {overdue} overdue",
      respond_by: "Answer the request", delete_by: "Delete the data",
      open: "open", extended: "extended",
      failed: "Could not load the register ({status}): {message}",
    },
    fi: {
      tab: "Pyynnöt ja määräajat",
      help: "Avoimet rekisteröidyn pyynnöt ja poistotehtävät, kiireellisin ensin. Myöhässä olevat on merkitty; näkymä ei näytä rekisteröidyn tunnistetta, vain oman viitteenne.",
      only_overdue: "Vain myöhässä olevat", reload: "Päivitä",
      due: "Määräpäivä", reference: "Viite", what: "Tehtävä", system: "Järjestelmä", status: "Tila",
      received: "Vastaanotettu", overdue: "myöhässä", none: "Ei avoimia tehtäviä.", loading: "Ladataan…",
      count: "{open} avoinna, {overdue} myöhässä",
      respond_by: "Vastaa pyyntöön", delete_by: "Poista tiedot",
      open: "avoin", extended: "jatkettu",
      failed: "Rekisterin lataus epäonnistui ({status}): {message}",
    },
  };
  let items = [];
  let lastError = null;

  const $ = (id) => document.getElementById(id);
  const lang = () => (document.documentElement.lang === "fi" ? "fi" : "en");
  function t(name, vars) {
    let s = T[lang()][name] || T.en[name] || name;
    if (vars) for (const [k, v] of Object.entries(vars)) s = s.replace("{" + k + "}", String(v));
    return s;
  }
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) node.setAttribute(k, String(v));
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  async function fetchStatus(status) {
    const headers = { "Accept": "application/json" };
    let key = null;
    try { key = sessionStorage.getItem(KEY_STORE); } catch (e) { key = null; }
    if (key) headers["Authorization"] = "Bearer " + key;
    const resp = await fetch("/v1/obligations?limit=1000&status=" + status, { headers, credentials: "omit", cache: "no-store" });
    const body = await resp.json().catch(() => ({ message: resp.statusText }));
    if (!resp.ok) throw { status: resp.status, message: body.message || "" };
    return body.items;
  }

  async function load() {
    lastError = null;
    $("obl-status").textContent = t("loading");
    try {
      const [open, extended] = await Promise.all([fetchStatus("open"), fetchStatus("extended")]);
      items = open.concat(extended).sort((a, b) => (a.due < b.due ? -1 : a.due > b.due ? 1 : a.id - b.id));
    } catch (e) {
      items = [];
      lastError = e;
    }
    render();
  }

  function render() {
    for (const node of document.querySelectorAll("[data-obl-i18n]")) node.textContent = t(node.dataset.oblI18n);
    const status = $("obl-status");
    const body = $("obl-rows");
    if (lastError) {
      status.textContent = t("failed", { status: lastError.status || 0, message: lastError.message || "" });
      body.replaceChildren();
      return;
    }
    const overdue = items.filter((o) => o.overdue).length;
    status.textContent = t("count", { open: items.length, overdue });
    const shown = $("obl-only-overdue").checked ? items.filter((o) => o.overdue) : items;
    if (!shown.length) {
      body.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "muted" }, t("none"))));
      return;
    }
    body.replaceChildren(...shown.map((o) => {
      const what = t(o.type) + (o.request_type ? ` (${o.request_type})` : "") +
        (o.data_categories && o.data_categories.length ? ": " + o.data_categories.join(", ") : "");
      const due = el("td", {}, el("time", { datetime: o.due }, o.due));
      if (o.overdue) due.append(" ", el("strong", { class: "badge overdue" }, t("overdue")));
      return el("tr", { class: o.overdue ? "overdue" : null, "data-id": o.id },
        due, el("td", {}, o.reference), el("td", {}, what), el("td", {}, o.system || "–"),
        el("td", {}, t(o.status)), el("td", {}, o.received));
    }));
  }

  function setup() {
    if (!$("panel-obligations")) return;
    $("obl-only-overdue").addEventListener("change", render);
    $("obl-reload").addEventListener("click", load);
    $("tab-obligations").addEventListener("click", load);
    // follow playground.js's language switch (it sets <html lang>)
    new MutationObserver(render).observe(document.documentElement, { attributes: true, attributeFilter: ["lang"] });
    render();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setup);
  else setup();
})();
