/* kti-policy playground: plain JavaScript, no libraries, no CDN.
 *
 * Everything shown comes from the service's JSON endpoints; text from the server is put into the
 * page as text nodes only (never parsed as markup), so a policy text cannot inject HTML. The API key
 * the user pastes stays in sessionStorage (this tab only) and travels as Authorization: Bearer.
 */
"use strict";

(function () {
  const KEY_STORE = "kti.playground.key";
  const LANG_STORE = "kti.playground.lang";

  const T = {
    en: {
      skip: "Skip to the playground", title: "Policy playground",
      subtitle: "KTI Laskutus Oy personal-data policies", version_label: "policy version",
      language: "Language", auth_heading: "API key", key_label: "API key (role query)",
      key_save: "Use this key", key_forget: "Forget the key",
      key_help: "Kept in this browser tab only (sessionStorage) and sent as Authorization: Bearer.",
      auth_off: "Authentication is off on this service (it answers loopback clients only).",
      auth_on_nokey: "This service has authentication on and no API key was given. Paste a key with the role query to use the playground.",
      auth_on_key: "Authentication is on; using the API key you gave (kept in this tab only).",
      auth_rejected: "The service did not accept the API key. Paste a valid key with the role query.",
      auth_forbidden: "This API key lacks the role query. Paste a key that has it.",
      views: "Views", tab_decide: "Try an operation", tab_policies: "Policies", tab_edit: "Edit and test",
      decide_help: "Describe a proposed operation and what is known about the data subject. Fields that do not apply may stay empty.",
      fs_operation: "Operation", operation: "Operation",
      operation_help: "Process needs a purpose, disclose a recipient, collect a source, subject_request a request.",
      purpose: "Purpose", source: "Source", at: "When it would happen (Helsinki time; empty: now)",
      data_categories: "Data categories", fs_recipient: "Recipient (disclose)",
      recipient_type: "Recipient type", recipient_country: "Country (ISO code, e.g. FI)",
      recipient_name: "Recipient name", legal_basis_type: "Type of legal basis", fs_legal: "Legal basis",
      legal_basis_reference: "Legal basis reference", fs_request: "Subject request",
      request_type: "Request type", request_received: "Received (Helsinki time)",
      request_written: "Made in writing", request_signed: "Signed", fs_subject: "Data subject and facts",
      subject_id: "Subject id", subject_help: "Facts recorded for this id through events apply too.",
      relationship: "Customer relationship", erasure_requested: "Erasure requested",
      consents: "Consents", objections: "Objections", access_requests: "Earlier access requests",
      add_date: "Add a date", remove: "Remove", access_date: "Access request date",
      access_help: "Dates of earlier access requests decide whether a new one is chargeable.",
      decide: "Decide", explain: "Show which conditions held", result: "Result",
      no_result: "Nothing decided yet.", not_given: "(not given)", special: "special category",
      filter: "Filter rules", only_uncovered: "Only rules no test covers",
      edit_help: "Paste a policy file or edit a copy of a loaded one. Nothing is saved or reloaded: the service checks the edited set for this request only.",
      copy_from: "Start from a loaded file", copy: "Copy into the editor",
      file_name: "File name in the policy folder",
      file_name_help: "A loaded file of this name is replaced; a new name adds a file.",
      editor: "Policy file (YAML)", editor_help: "Tab moves to the next control; indent with spaces.",
      check: "Check and decide", run_tests: "Run the shipped policy tests",
      check_help: "Check and decide uses the operation and facts of the first view.",
      allow: "Allowed", deny: "Denied", reasons: "Reasons", obligations: "Obligations",
      no_obligations: "No obligations.", rule: "rule", citation: "citation",
      permit: "permits", forbid: "forbids", respond_by: "Respond by", access_fee: "Access fee",
      chargeable: "chargeable", not_chargeable: "not chargeable",
      decision_id: "decision id", answered_by_decisions: "Answered by POST /v1/decisions: the loaded policies, with the facts recorded for the subject added to those entered here.",
      answered_by_playground: "Answered by the playground with the loaded policies and only the facts entered here (access request dates are recorded facts, which a decision request cannot carry).",
      explanation: "Which conditions held", held: "held", not_held: "did not hold",
      when: "When", unless: "Unless", loading: "Working…",
      edited_set: "Edited set", loaded_set: "Loaded set", same: "The edited set decides this operation the same way as the loaded set.",
      differs: "The edited set decides this operation differently from the loaded set.",
      check_ok: "The edited set checks without errors.",
      check_errors: "The edited set has errors; nothing else was run.",
      go_to_line: "Go to line", line: "line", col: "column",
      tests_summary: "Policy tests against the edited set", tests_none: "The policy folder has no tests.",
      case_passed: "passed", case_failed: "failed", suite: "Suite", case_name: "Case", outcome: "Outcome",
      got: "Decision, rules, failures", with_loaded: "with the loaded set",
      changed: "Cases whose outcome the edit changes", no_change: "No case changes its outcome.",
      test_file_errors: "Problems in the test files", covered_by: "Covered by",
      not_covered: "No policy test covers this rule.", rules_shown: "{n} of {m} rules shown",
      edit_copy: "Edit a copy", file: "file", policy_citation: "citation",
      folder_differs: "The policy folder on disk has changed since the loaded set was loaded; edits apply to the files on disk.",
      need_file_name: "Give the file a name like disclosure.yaml.",
      need_operation: "Choose an operation first (in the first view).",
      request_error: "The request was not accepted", network_error: "The service could not be reached.",
      cursor: "Line {l}, column {c}", uncovered_count: "{n} rules are not covered by any policy test.",
      explanation_for: "Explanation with the facts entered here",
      tests_loaded_note: "Without an edit the tests run against the loaded set.",
      obligation_rule: "from rule",
      extension_notice_by: "Tell the data subject of the extension by", delete_by: "Delete by",
      retain_until: "Keep until", retain_until_open: "Keep: the retention period has not started yet",
      verify_identity: "Verify the requester's identity", notify_recipients: "Notify the recipients",
      obligation_categories: "Data categories", law: "law",
      fs_request_more: "Copy, identity, extension", request_copy: "Which copy of the data (1 = the first, free)",
      request_excessive: "Documented as manifestly unfounded or excessive", request_identity: "Identity verified",
      request_extended: "Deadline extended (complex or many requests)",
      channel: "Channel (marketing)", subject_kind: "Kind of data subject", cookie_kind: "Cookie kind (store_cookie)",
      recipient_dpa: "Bound by a data processing agreement", recipient_safeguards: "Transfer safeguard",
      notice_link: "Privacy notice generated from the loaded policies",
    },
    fi: {
      skip: "Siirry leikkikenttään", title: "Sääntöjen kokeilu",
      subtitle: "KTI Laskutus Oy:n henkilötietosäännöt", version_label: "sääntöversio",
      language: "Kieli", auth_heading: "API-avain", key_label: "API-avain (rooli query)",
      key_save: "Käytä tätä avainta", key_forget: "Unohda avain",
      key_help: "Säilyy vain tässä selainvälilehdessä (sessionStorage) ja lähetetään otsakkeessa Authorization: Bearer.",
      auth_off: "Palvelun tunnistautuminen on pois päältä (se vastaa vain paikallisille asiakkaille).",
      auth_on_nokey: "Palvelussa on tunnistautuminen päällä, eikä API-avainta ole annettu. Liitä avain, jolla on rooli query.",
      auth_on_key: "Tunnistautuminen on päällä; käytössä antamasi API-avain (vain tässä välilehdessä).",
      auth_rejected: "Palvelu ei hyväksynyt API-avainta. Liitä voimassa oleva avain, jolla on rooli query.",
      auth_forbidden: "Tällä API-avaimella ei ole roolia query. Liitä avain, jolla se on.",
      views: "Näkymät", tab_decide: "Kokeile toimenpidettä", tab_policies: "Säännöt", tab_edit: "Muokkaa ja testaa",
      decide_help: "Kuvaa suunniteltu toimenpide ja mitä rekisteröidystä tiedetään. Kentät, jotka eivät koske toimenpidettä, voi jättää tyhjiksi.",
      fs_operation: "Toimenpide", operation: "Toimenpide",
      operation_help: "Käsittely tarvitsee tarkoituksen, luovutus vastaanottajan, kerääminen lähteen ja pyyntö pyynnön tiedot.",
      purpose: "Tarkoitus", source: "Lähde", at: "Ajankohta (Helsingin aikaa; tyhjä: nyt)",
      data_categories: "Tietoryhmät", fs_recipient: "Vastaanottaja (luovutus)",
      recipient_type: "Vastaanottajan tyyppi", recipient_country: "Maa (ISO-koodi, esim. FI)",
      recipient_name: "Vastaanottajan nimi", legal_basis_type: "Oikeusperusteen tyyppi", fs_legal: "Oikeusperuste",
      legal_basis_reference: "Oikeusperusteen viite", fs_request: "Rekisteröidyn pyyntö",
      request_type: "Pyynnön tyyppi", request_received: "Vastaanotettu (Helsingin aikaa)",
      request_written: "Tehty kirjallisesti", request_signed: "Allekirjoitettu", fs_subject: "Rekisteröity ja tosiasiat",
      subject_id: "Rekisteröidyn tunniste", subject_help: "Myös tälle tunnisteelle tapahtumina kirjatut tiedot otetaan huomioon.",
      relationship: "Asiakassuhde", erasure_requested: "Poistoa pyydetty",
      consents: "Suostumukset", objections: "Kiellot", access_requests: "Aiemmat tarkastuspyynnöt",
      add_date: "Lisää päivämäärä", remove: "Poista", access_date: "Tarkastuspyynnön päivä",
      access_help: "Aiempien tarkastuspyyntöjen päivämäärät ratkaisevat, onko uusi pyyntö maksullinen.",
      decide: "Ratkaise", explain: "Näytä, mitkä ehdot täyttyivät", result: "Tulos",
      no_result: "Mitään ei ole vielä ratkaistu.", not_given: "(ei annettu)", special: "erityinen tietoryhmä",
      filter: "Suodata sääntöjä", only_uncovered: "Vain säännöt, joita mikään testi ei kata",
      edit_help: "Liitä sääntötiedosto tai muokkaa ladatun tiedoston kopiota. Mitään ei tallenneta eikä ladata uudelleen: palvelu tarkistaa muokatun joukon vain tätä pyyntöä varten.",
      copy_from: "Aloita ladatusta tiedostosta", copy: "Kopioi muokkaimeen",
      file_name: "Tiedoston nimi sääntökansiossa",
      file_name_help: "Samanniminen ladattu tiedosto korvataan; uusi nimi lisää tiedoston.",
      editor: "Sääntötiedosto (YAML)", editor_help: "Sarkain siirtyy seuraavaan kenttään; sisennä välilyönneillä.",
      check: "Tarkista ja ratkaise", run_tests: "Aja sääntöjen testit",
      check_help: "Tarkista ja ratkaise käyttää ensimmäisen näkymän toimenpidettä ja tosiasioita.",
      allow: "Sallittu", deny: "Kielletty", reasons: "Perusteet", obligations: "Velvoitteet",
      no_obligations: "Ei velvoitteita.", rule: "sääntö", citation: "lähde",
      permit: "sallii", forbid: "kieltää", respond_by: "Vastattava viimeistään", access_fee: "Tarkastusmaksu",
      chargeable: "peritään", not_chargeable: "ei peritä",
      decision_id: "päätöksen tunniste", answered_by_decisions: "Vastasi POST /v1/decisions: ladatut säännöt, ja tässä annettujen lisäksi rekisteröidylle kirjatut tiedot.",
      answered_by_playground: "Vastasi leikkikenttä ladatuilla säännöillä ja vain tässä annetuilla tiedoilla (tarkastuspyyntöjen päivät ovat kirjattuja tietoja, joita päätöspyyntö ei voi kuljettaa).",
      explanation: "Mitkä ehdot täyttyivät", held: "täyttyi", not_held: "ei täyttynyt",
      when: "Kun", unless: "Paitsi jos", loading: "Käsitellään…",
      edited_set: "Muokattu joukko", loaded_set: "Ladattu joukko", same: "Muokattu joukko ratkaisee toimenpiteen samoin kuin ladattu.",
      differs: "Muokattu joukko ratkaisee toimenpiteen eri tavalla kuin ladattu.",
      check_ok: "Muokatussa joukossa ei ole virheitä.",
      check_errors: "Muokatussa joukossa on virheitä; muuta ei ajettu.",
      go_to_line: "Siirry riville", line: "rivi", col: "sarake",
      tests_summary: "Sääntöjen testit muokattua joukkoa vasten", tests_none: "Sääntökansiossa ei ole testejä.",
      case_passed: "läpi", case_failed: "epäonnistui", suite: "Sarja", case_name: "Tapaus", outcome: "Tulos",
      got: "Päätös, säännöt, virheet", with_loaded: "ladatulla joukolla",
      changed: "Tapaukset, joiden tuloksen muutos muuttaa", no_change: "Minkään tapauksen tulos ei muutu.",
      test_file_errors: "Ongelmat testitiedostoissa", covered_by: "Testit",
      not_covered: "Mikään sääntötesti ei kata tätä sääntöä.", rules_shown: "{n}/{m} sääntöä näkyvissä",
      edit_copy: "Muokkaa kopiota", file: "tiedosto", policy_citation: "lähde",
      folder_differs: "Sääntökansio on muuttunut levyllä viimeisen latauksen jälkeen; muutokset tehdään levyllä oleviin tiedostoihin.",
      need_file_name: "Anna tiedostolle nimi, esim. disclosure.yaml.",
      need_operation: "Valitse ensin toimenpide (ensimmäisessä näkymässä).",
      request_error: "Pyyntöä ei hyväksytty", network_error: "Palveluun ei saatu yhteyttä.",
      cursor: "Rivi {l}, sarake {c}", uncovered_count: "{n} sääntöä ei ole minkään sääntötestin kattama.",
      explanation_for: "Selitys tässä annetuilla tiedoilla",
      tests_loaded_note: "Ilman muutosta testit ajetaan ladattua joukkoa vasten.",
      obligation_rule: "säännöstä",
      extension_notice_by: "Ilmoita rekisteröidylle pidennyksestä viimeistään", delete_by: "Poistettava viimeistään",
      retain_until: "Säilytettävä asti", retain_until_open: "Säilytä: säilytysaika ei ole vielä alkanut",
      verify_identity: "Varmista pyytäjän henkilöllisyys", notify_recipients: "Ilmoita vastaanottajille",
      obligation_categories: "Tietoryhmät", law: "säädös",
      fs_request_more: "Kopio, henkilöllisyys, pidennys", request_copy: "Monesko kopio tiedoista (1 = ensimmäinen, maksuton)",
      request_excessive: "Todettu ilmeisen perusteettomaksi tai kohtuuttomaksi", request_identity: "Henkilöllisyys varmistettu",
      request_extended: "Määräaikaa pidennetty (monimutkainen tai useita pyyntöjä)",
      channel: "Kanava (markkinointi)", subject_kind: "Rekisteröidyn tyyppi", cookie_kind: "Evästeen laji (evästeen tallentaminen)",
      recipient_dpa: "Henkilötietojen käsittelysopimus tehty", recipient_safeguards: "Siirron suojatoimi",
      notice_link: "Ladatuista säännöistä tuotettu tietosuojaseloste",
    },
  };

  const state = {
    lang: "en",
    key: null,
    authOn: false,
    authProblem: null, // null | "missing" | "rejected" | "forbidden"
    policies: null,
    last: { decide: null, edit: null }, // what to redo when the language changes
  };

  const $ = (id) => document.getElementById(id);

  function t(name, vars) {
    let s = (T[state.lang] && T[state.lang][name]) || T.en[name] || name;
    if (vars) for (const [k, v] of Object.entries(vars)) s = s.replace("{" + k + "}", String(v));
    return s;
  }

  /* el("p", {class: "x"}, "text", child) — text children become text nodes (never HTML). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function replace(target, ...children) {
    target.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  }

  // --- API ------------------------------------------------------------------------------------

  async function api(method, path, body) {
    const headers = { "Accept": "application/json", "Accept-Language": state.lang };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (state.key) headers["Authorization"] = "Bearer " + state.key;
    let resp;
    try {
      resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "omit", cache: "no-store" });
    } catch (e) {
      return { status: 0, body: { error: "network_error", message: t("network_error"), details: {} } };
    }
    let data;
    try { data = await resp.json(); } catch (e) { data = { error: "bad_response", message: resp.statusText, details: {} }; }
    if (resp.status === 401) setAuthProblem(state.key ? "rejected" : "missing");
    else if (resp.status === 403 && data && data.error === "forbidden") setAuthProblem("forbidden");
    else if (resp.ok) setAuthProblem(null);
    return { status: resp.status, body: data };
  }

  // --- auth -----------------------------------------------------------------------------------

  function setAuthProblem(problem) {
    state.authProblem = problem;
    renderAuth();
  }

  function renderAuth() {
    const status = $("auth-status");
    const form = $("key-form");
    const section = $("auth");
    let msg;
    if (state.authProblem === "rejected") msg = t("auth_rejected");
    else if (state.authProblem === "forbidden") msg = t("auth_forbidden");
    else if (state.authProblem === "missing" || (state.authOn && !state.key)) msg = t("auth_on_nokey");
    else if (state.authOn) msg = t("auth_on_key");
    else msg = t("auth_off");
    status.textContent = msg;
    const warn = state.authProblem !== null || (state.authOn && !state.key);
    section.classList.toggle("warn", warn);
    form.hidden = !(state.authOn || state.authProblem !== null);
    $("key-forget").hidden = !state.key;
  }

  function setupAuth() {
    state.authOn = document.body.dataset.auth === "on";
    try { state.key = sessionStorage.getItem(KEY_STORE); } catch (e) { state.key = null; }
    $("key-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const value = $("api-key").value.trim();
      if (!value) { $("api-key").focus(); return; }
      state.key = value;
      try { sessionStorage.setItem(KEY_STORE, value); } catch (e) { /* private mode: this page only */ }
      $("api-key").value = "";
      state.authProblem = null;
      renderAuth();
      loadPolicies();
    });
    $("key-forget").addEventListener("click", () => {
      state.key = null;
      try { sessionStorage.removeItem(KEY_STORE); } catch (e) { /* nothing kept */ }
      renderAuth();
      $("api-key").focus();
    });
    renderAuth();
  }

  // --- language -------------------------------------------------------------------------------

  function applyLanguage() {
    document.documentElement.lang = state.lang;
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const b of document.querySelectorAll(".lang-btn")) b.setAttribute("aria-pressed", String(b.dataset.lang === state.lang));
    document.title = t("title") + " · kti-policy";
    const notice = $("notice-link");
    if (notice) notice.href = `/v1/notice?lang=${state.lang}`;
    renderAuth();
    updateCursor();
  }

  function setupLanguage() {
    let stored = null;
    try { stored = localStorage.getItem(LANG_STORE); } catch (e) { stored = null; }
    state.lang = stored === "fi" ? "fi" : "en";
    for (const b of document.querySelectorAll(".lang-btn")) {
      b.addEventListener("click", async () => {
        if (state.lang === b.dataset.lang) return;
        state.lang = b.dataset.lang;
        try { localStorage.setItem(LANG_STORE, state.lang); } catch (e) { /* session only */ }
        applyLanguage();
        await loadPolicies();
        // answers carry texts in one language: ask again in the new one
        if (state.last.decide) await state.last.decide();
        if (state.last.edit) await state.last.edit();
      });
    }
    applyLanguage();
  }

  // --- tabs -----------------------------------------------------------------------------------

  function setupTabs() {
    const tabs = Array.from(document.querySelectorAll('[role="tab"]'));
    function select(tab, focus) {
      for (const other of tabs) {
        const on = other === tab;
        other.setAttribute("aria-selected", String(on));
        other.tabIndex = on ? 0 : -1;
        $(other.getAttribute("aria-controls")).hidden = !on;
      }
      if (focus) tab.focus();
    }
    for (const tab of tabs) {
      tab.addEventListener("click", () => select(tab, false));
      tab.addEventListener("keydown", (ev) => {
        const i = tabs.indexOf(tab);
        let next = null;
        if (ev.key === "ArrowRight") next = tabs[(i + 1) % tabs.length];
        else if (ev.key === "ArrowLeft") next = tabs[(i - 1 + tabs.length) % tabs.length];
        else if (ev.key === "Home") next = tabs[0];
        else if (ev.key === "End") next = tabs[tabs.length - 1];
        if (next) { ev.preventDefault(); select(next, true); }
      });
    }
    state.selectTab = (id) => select($(id), true);
  }

  // --- vocabulary pick-lists ------------------------------------------------------------------

  function label(kind, id) {
    const v = state.policies && state.policies.vocabulary[kind] && state.policies.vocabulary[kind][id];
    return v ? v.label[state.lang] || v.label.en : id;
  }

  function fillSelect(select, kind, empty) {
    const vocab = (state.policies && state.policies.vocabulary[kind]) || {};
    const old = select.value;
    const options = [];
    if (empty) options.push(el("option", { value: "" }, t("not_given")));
    for (const id of Object.keys(vocab)) options.push(el("option", { value: id }, `${label(kind, id)} (${id})`));
    replace(select, options);
    if (old && (old === "" || vocab[old])) select.value = old;
  }

  function fillChecks(box, kind) {
    const vocab = (state.policies && state.policies.vocabulary[kind]) || {};
    const checked = new Set(Array.from(box.querySelectorAll("input:checked")).map((i) => i.value));
    const items = Object.keys(vocab).map((id) => {
      const inputId = `${box.id}-${id}`;
      const special = vocab[id].special ? el("span", { class: "tag" }, t("special")) : null;
      return el("div", { class: "check" },
        el("input", { type: "checkbox", id: inputId, value: id, checked: checked.has(id) }),
        el("label", { for: inputId }, `${label(kind, id)} (${id})`, special ? " " : null, special));
    });
    replace(box, items);
  }

  function fillPickLists() {
    fillSelect($("f-operation"), "operation", false);
    for (const select of document.querySelectorAll("select[data-vocab]")) fillSelect(select, select.dataset.vocab, select.dataset.empty === "1");
    for (const box of document.querySelectorAll(".checks[data-vocab]")) fillChecks(box, box.dataset.vocab);
  }

  // --- the operation form ---------------------------------------------------------------------

  function helsinkiIso(local) {
    // "2026-03-02T10:00" (Helsinki wall time) -> "2026-03-02T10:00:00+02:00"
    if (!local) return null;
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(local);
    if (!m) return null;
    let offset = "+02:00";
    try {
      const guess = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4] - 2, +m[5]));
      const part = new Intl.DateTimeFormat("en-US", { timeZone: "Europe/Helsinki", timeZoneName: "longOffset" })
        .formatToParts(guess).find((p) => p.type === "timeZoneName");
      const o = part && /GMT([+-]\d{2}:\d{2})/.exec(part.value);
      if (o) offset = o[1];
    } catch (e) { /* keep the winter offset */ }
    return `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:00${offset}`;
  }

  function checkedValues(box) {
    return Array.from(box.querySelectorAll("input:checked")).map((i) => i.value);
  }

  function readForm() {
    const v = (id) => $(id).value.trim();
    const op = { operation: v("f-operation") };
    if (v("f-purpose")) op.purpose = v("f-purpose");
    if (v("f-source")) op.source = v("f-source");
    op.data_categories = checkedValues($("f-data-categories"));
    const at = helsinkiIso(v("f-at"));
    if (at) op.at = at;
    if (v("f-recipient-type")) {
      op.recipient = { type: v("f-recipient-type") };
      if (v("f-recipient-country")) op.recipient.country = v("f-recipient-country").toUpperCase();
      if (v("f-recipient-name")) op.recipient.name = v("f-recipient-name");
      if ($("f-recipient-dpa").checked) op.recipient.dpa = true;
      if (v("f-recipient-safeguards")) op.recipient.safeguards = v("f-recipient-safeguards");
    }
    if (v("f-channel")) op.channel = v("f-channel");
    if (v("f-cookie-kind")) op.cookie = { kind: v("f-cookie-kind") };
    if (v("f-legal-type")) {
      op.legal_basis = { type: v("f-legal-type") };
      if (v("f-legal-reference")) op.legal_basis.reference = v("f-legal-reference");
    }
    if (v("f-request-type")) {
      op.request = { type: v("f-request-type"), written: $("f-request-written").checked, signed: $("f-request-signed").checked };
      const received = helsinkiIso(v("f-request-received"));
      if (received) op.request.received_at = received;
      const copy = parseInt(v("f-request-copy"), 10);
      if (copy >= 1) op.request.copy = copy;
      if ($("f-request-excessive").checked) op.request.excessive = true;
      if ($("f-request-identity").checked) op.request.identity_verified = true;
      if ($("f-request-extended").checked) op.request.extended = true;
    }
    const facts = {
      consents: checkedValues($("f-consents")),
      objections: checkedValues($("f-objections")),
      erasure_requested: $("f-erasure").checked,
      access_requests: Array.from(document.querySelectorAll("#f-access-list input")).map((i) => helsinkiIso(i.value)).filter(Boolean),
    };
    if (v("f-relationship")) facts.relationship = v("f-relationship");
    if (v("f-subject-kind")) facts.kind = v("f-subject-kind");
    if (op.operation !== "store_cookie" || v("f-subject-id")) op.subject = { id: v("f-subject-id") || "playground-subject" };
    return { op, facts };
  }

  /* the decision request body for POST /v1/decisions: facts go inline with the subject */
  function withInlineFacts(op, facts) {
    const body = JSON.parse(JSON.stringify(op));
    if (!body.subject) return body;
    if (facts.consents.length) body.subject.consents = facts.consents;
    if (facts.objections.length) body.subject.objections = facts.objections;
    if (facts.relationship) body.subject.relationship = facts.relationship;
    if (facts.kind) body.subject.kind = facts.kind;
    if (facts.erasure_requested) body.subject.erasure_requested = true;
    return body;
  }

  function addAccessDate(value) {
    const list = $("f-access-list");
    const n = list.children.length + 1;
    const id = `f-access-${Date.now()}-${n}`;
    const input = el("input", { type: "datetime-local", id, value: value || null });
    const lab = el("label", { for: id, class: "visually-hidden" }, `${t("access_date")} ${n}`);
    const remove = el("button", { type: "button", class: "small", "aria-label": `${t("remove")}: ${t("access_date")} ${n}` }, t("remove"));
    const item = el("li", {}, lab, input, remove);
    remove.addEventListener("click", () => {
      const next = item.nextElementSibling || item.previousElementSibling;
      item.remove();
      (next ? next.querySelector("input") : $("f-access-add")).focus();
    });
    list.append(item);
    input.focus();
  }

  // --- rendering answers ----------------------------------------------------------------------

  function formatDate(iso) {
    if (!iso) return "";
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(iso);
    return m && state.lang === "fi" ? `${+m[3]}.${+m[2]}.${m[1]}` : iso;
  }

  /* what an obligation asks, in a few words: each type its own wording (never another type's) */
  function obligationHead(o) {
    switch (o.type) {
      case "access_fee": return `${t("access_fee")}: ${o.chargeable ? t("chargeable") : t("not_chargeable")}`;
      case "retain_until": return o.due ? `${t("retain_until")} ${formatDate(o.due)}` : t("retain_until_open");
      case "verify_identity": case "notify_recipients": return t(o.type);
      case "respond_by": case "extension_notice_by": case "delete_by":
        return o.due ? `${t(o.type)} ${formatDate(o.due)}` : t(o.type);
      default: return o.due ? `${o.type} ${formatDate(o.due)}` : o.type;
    }
  }

  function renderDecision(d, headingLevel) {
    const h = `h${headingLevel || 3}`;
    const verdict = el("p", { class: `verdict ${d.decision}` },
      el("span", { class: "verdict-word" }, t(d.decision)));
    const reasons = el("ol", { class: "reasons" }, d.reasons.map((r) =>
      el("li", { class: `reason ${r.effect}` },
        el("p", { class: "message" }, r.message),
        el("p", { class: "meta" },
          el("span", {}, `${t("rule")}: `, el("code", {}, r.rule)), " · ",
          el("span", {}, `${t(r.effect)}`), " · ",
          el("span", { class: "citation" }, `${t("citation")}: `, el("strong", {}, r.source || "—")),
          r.law && r.law.length ? [" · ", el("span", { class: "law" }, `${t("law")}: `, el("strong", {}, r.law.join(", ")))] : null))));
    const obligations = d.obligations.length
      ? el("ul", { class: "obligations" }, d.obligations.map((o) => el("li", {},
        el("p", {}, el("strong", { class: "obligation-head" }, obligationHead(o))),
        el("p", { class: "message" }, o.message),
        o.data_categories && o.data_categories.length
          ? el("p", { class: "meta categories" }, `${t("obligation_categories")}: `, o.data_categories.map((c) => label("data_category", c)).join(", "))
          : null,
        el("p", { class: "meta" }, `${t("obligation_rule")} `, el("code", {}, o.rule)))))
      : el("p", { class: "muted" }, t("no_obligations"));
    return el("div", { class: "decision" }, verdict,
      el(h, {}, t("reasons")), reasons,
      el(h, {}, t("obligations")), obligations,
      el("p", { class: "meta small" }, `${t("decision_id")}: `, el("code", {}, d.decision_id), ` · ${t("version_label")}: `, el("code", {}, d.policy_version)));
  }

  function renderExplained(node) {
    const mark = node.held ? "✓" : "✗";
    return el("li", { class: node.held ? "held" : "not-held" },
      el("span", { "aria-hidden": "true", class: "mark" }, mark), " ",
      el("span", { class: "visually-hidden" }, `${node.held ? t("held") : t("not_held")}: `),
      node.text,
      node.parts ? el("ul", {}, node.parts.map(renderExplained)) : null);
  }

  function renderExplanations(list) {
    return el("div", { class: "explanations" }, list.map((x) => el("section", { class: "explained" },
      el("h4", {}, el("code", {}, x.rule), ` (${t(x.effect)})`),
      el("p", { class: "cond-head" }, t("when")), el("ul", { class: "tree" }, renderExplained(x.when)),
      x.unless ? [el("p", { class: "cond-head" }, t("unless")), el("ul", { class: "tree" }, renderExplained(x.unless))] : null)));
  }

  function renderError(body, editorName) {
    const items = [];
    const details = (body && body.details) || {};
    const head = el("p", { class: "error-head", role: "alert" }, `${t("request_error")}: ${body.message || body.error}`);
    if (Array.isArray(details.errors)) {
      for (const e of details.errors) {
        const where = `${e.file}:${e.line}:${e.col}`;
        const go = editorName && e.file === editorName && e.line > 0
          ? el("button", { type: "button", class: "small", onclick: () => goToLine(e.line, e.col) }, `${t("go_to_line")} ${e.line}`)
          : null;
        items.push(el("li", {}, el("code", { class: "where" }, where), " ", e.message, " ", el("span", { class: "muted" }, `[${e.code}]`), " ", go));
      }
    }
    return el("div", { class: "error" }, head, items.length ? el("ul", { class: "errors" }, items) : null);
  }

  function busy(target) {
    replace(target, el("p", { class: "muted" }, t("loading")));
  }

  // --- view 1: decide -------------------------------------------------------------------------

  async function decide() {
    const target = $("decide-result");
    const { op, facts } = readForm();
    if (!op.operation) { replace(target, el("p", { class: "error-head", role: "alert" }, t("need_operation"))); return; }
    busy(target);
    let res, note;
    if (facts.access_requests.length) {
      res = await api("POST", "/v1/playground/evaluate", { files: {}, operation: op, facts });
      note = t("answered_by_playground");
      if (res.status === 200) res = { status: 200, body: res.body.edited.decision, explanations: res.body.edited.explanations };
    } else {
      res = await api("POST", "/v1/decisions", withInlineFacts(op, facts));
      note = t("answered_by_decisions");
    }
    if (res.status !== 200) { replace(target, renderError(res.body)); return; }
    replace(target, renderDecision(res.body, 3), el("p", { class: "note small" }, note),
      res.explanations ? [el("h3", {}, t("explanation")), renderExplanations(res.explanations)] : null);
  }

  async function explainDecision() {
    const target = $("decide-result");
    const { op, facts } = readForm();
    if (!op.operation) { replace(target, el("p", { class: "error-head", role: "alert" }, t("need_operation"))); return; }
    busy(target);
    const res = await api("POST", "/v1/playground/evaluate", { files: {}, operation: op, facts });
    if (res.status !== 200) { replace(target, renderError(res.body)); return; }
    const side = res.body.edited;
    replace(target, renderDecision(side.decision, 3), el("p", { class: "note small" }, t("answered_by_playground")),
      el("h3", {}, t("explanation_for")), renderExplanations(side.explanations));
  }

  // --- view 2: policies -----------------------------------------------------------------------

  async function loadPolicies() {
    const res = await api("GET", "/v1/playground/policies");
    if (res.status !== 200) {
      replace($("policy-list"), renderError(res.body));
      return;
    }
    state.policies = res.body;
    $("policy-version").textContent = res.body.policy_version;
    fillPickLists();
    renderPolicies();
    fillCopyFrom();
    const note = $("folder-note");
    note.hidden = res.body.folder_matches_loaded !== false;
    note.textContent = t("folder_differs");
  }

  function renderPolicies() {
    const data = state.policies;
    if (!data) return;
    const q = $("rule-filter").value.trim().toLowerCase();
    const onlyUncovered = $("only-uncovered").checked;
    let shown = 0, total = 0;
    const blocks = data.policies.map((p) => {
      const rules = p.rules.filter((r) => {
        total += 1;
        const text = [r.id, r.reason, r.when, r.unless || "", r.source, r.effect].join("\n").toLowerCase();
        const ok = (!q || text.includes(q)) && (!onlyUncovered || r.covered_by.length === 0);
        if (ok) shown += 1;
        return ok;
      });
      if (!rules.length) return null;
      return el("section", { class: "policy", "aria-labelledby": `pol-${p.id}` },
        el("div", { class: "policy-head" },
          el("h2", { id: `pol-${p.id}` }, p.title, " ", el("code", {}, p.id)),
          el("p", { class: "meta" }, `${t("file")}: `, el("code", {}, p.file), ` · ${t("policy_citation")}: `, el("strong", {}, p.source || "—")),
          el("button", { type: "button", class: "small", onclick: () => editCopy(p.file) }, `${t("edit_copy")}: ${p.file}`)),
        p.description ? el("p", {}, p.description) : null,
        el("ul", { class: "rules" }, rules.map(renderRule)));
    });
    replace($("policy-list"), blocks, data.uncovered.length && !q && !onlyUncovered
      ? el("p", { class: "note" }, t("uncovered_count", { n: data.uncovered.length })) : null);
    $("rule-count").textContent = t("rules_shown", { n: shown, m: total });
  }

  /* an obligation as a rule declares it: its type and its parameters, e.g. "respond_by (within: months 1)" */
  function obligationSpec(o) {
    const params = Object.entries(o).filter(([k]) => k !== "type" && !k.startsWith("message"))
      .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(" ") : (v && typeof v === "object" ? JSON.stringify(v) : v)}`);
    return params.length ? `${o.type} (${params.join("; ")})` : o.type;
  }

  function renderRule(r) {
    const covered = r.covered_by.length
      ? el("details", {}, el("summary", {}, `${t("covered_by")} (${r.covered_by.length})`),
        el("ul", {}, r.covered_by.map((c) => el("li", { class: c.passed ? "" : "failing" },
          `${c.suite}: ${c.name}`, c.passed ? null : ` (${t("case_failed")})`))))
      : el("p", { class: "uncovered" }, t("not_covered"));
    return el("li", { class: `rule ${r.effect}` },
      el("h3", {}, el("code", {}, r.id), " ", el("span", { class: `effect ${r.effect}` }, t(r.effect))),
      el("p", { class: "message" }, r.reason),
      r.description ? el("p", {}, r.description) : null,
      el("p", { class: "meta" }, `${t("citation")}: `, el("strong", {}, r.source || "—"),
        r.law && r.law.length ? [` · ${t("law")}: `, el("strong", { class: "law" }, r.law.join(", "))] : null,
        r.line ? ` · ${r.file}:${r.line}` : null),
      el("p", { class: "cond-head" }, t("when")), el("pre", { class: "cond" }, r.when),
      r.unless ? [el("p", { class: "cond-head" }, t("unless")), el("pre", { class: "cond" }, r.unless)] : null,
      r.obligations.length ? el("p", { class: "meta" }, `${t("obligations")}: `,
        r.obligations.map(obligationSpec).join(", ")) : null,
      covered);
  }

  // --- view 3: edit and test ------------------------------------------------------------------

  function fillCopyFrom() {
    const select = $("copy-from");
    const old = select.value;
    const names = Object.keys((state.policies && state.policies.files) || {});
    replace(select, names.map((n) => el("option", { value: n }, n)));
    if (names.includes(old)) select.value = old;
  }

  function editCopy(name) {
    const files = (state.policies && state.policies.files) || {};
    if (!(name in files)) return;
    $("copy-from").value = name;
    $("edit-name").value = name;
    $("editor").value = files[name];
    state.selectTab("tab-edit");
    $("editor").focus();
    $("editor").setSelectionRange(0, 0);
    $("editor").scrollTop = 0;
    updateCursor();
  }

  function editedFiles() {
    const name = $("edit-name").value.trim();
    const text = $("editor").value;
    if (!name && !text) return {};
    if (!name) return null;
    return { [name]: text };
  }

  function goToLine(line, col) {
    const ed = $("editor");
    const lines = ed.value.split("\n");
    let offset = 0;
    for (let i = 0; i < Math.min(line - 1, lines.length); i++) offset += lines[i].length + 1;
    offset += Math.max(0, Math.min((col || 1) - 1, (lines[line - 1] || "").length));
    ed.focus();
    ed.setSelectionRange(offset, offset);
    const lineHeight = parseFloat(getComputedStyle(ed).lineHeight) || 20;
    ed.scrollTop = Math.max(0, (line - 4) * lineHeight);
    updateCursor();
  }

  function updateCursor() {
    const ed = $("editor");
    if (!ed) return;
    const before = ed.value.slice(0, ed.selectionStart);
    const l = before.split("\n").length;
    const c = before.length - before.lastIndexOf("\n");
    $("cursor-pos").textContent = t("cursor", { l, c });
  }

  async function checkEdited() {
    const target = $("edit-result");
    const files = editedFiles();
    if (files === null) { replace(target, el("p", { class: "error-head", role: "alert" }, t("need_file_name"))); $("edit-name").focus(); return; }
    const { op, facts } = readForm();
    if (!op.operation) { replace(target, el("p", { class: "error-head", role: "alert" }, t("need_operation"))); return; }
    busy(target);
    const res = await api("POST", "/v1/playground/evaluate", { files, operation: op, facts });
    const name = Object.keys(files)[0];
    if (res.status === 422) { replace(target, el("p", { class: "verdict-note" }, t("check_errors")), renderError(res.body, name)); return; }
    if (res.status !== 200) { replace(target, renderError(res.body, name)); return; }
    const b = res.body;
    const column = (title, side) => el("section", { class: "side" }, el("h3", {}, title, " ", el("code", { class: "small" }, side.policy_version)),
      side.decision ? [renderDecision(side.decision, 4), side.explanations.length ? [el("h4", {}, t("explanation")), renderExplanations(side.explanations)] : null]
        : renderError(side.error || {}));
    replace(target,
      el("p", { class: "ok" }, t("check_ok")),
      el("p", { class: b.same ? "note" : "note changed" }, b.same ? t("same") : t("differs")),
      el("div", { class: "compare" }, column(t("edited_set"), b.edited), column(t("loaded_set"), b.loaded)));
  }

  async function runTests() {
    const target = $("edit-result");
    const files = editedFiles();
    if (files === null) { replace(target, el("p", { class: "error-head", role: "alert" }, t("need_file_name"))); $("edit-name").focus(); return; }
    busy(target);
    const res = await api("POST", "/v1/playground/test", { files });
    const name = Object.keys(files)[0];
    if (res.status === 422) { replace(target, el("p", { class: "verdict-note" }, t("check_errors")), renderError(res.body, name)); return; }
    if (res.status !== 200) { replace(target, renderError(res.body, name)); return; }
    const b = res.body;
    // failing cases first: they are what an edit needs to look at
    const ordered = b.results.filter((r) => !r.passed).concat(b.results.filter((r) => r.passed));
    const rows = ordered.map((r) => el("tr", { class: r.passed ? "pass" : "fail" },
      el("td", {}, el("strong", {}, r.passed ? t("case_passed") : t("case_failed")),
        el("br"), el("span", { class: "small" }, `${t("with_loaded")}: ${r.passed_with_loaded === null ? "—" : (r.passed_with_loaded ? t("case_passed") : t("case_failed"))}`)),
      el("td", {}, `${r.suite}: ${r.name}`, el("br"), el("span", { class: "muted small" }, `${r.file}:${r.line}`)),
      el("td", {}, r.decision ? t(r.decision) : "—", " ", el("code", { class: "small" }, r.rules.join(", ")),
        r.failures.length ? el("ul", { class: "failures" }, r.failures.map((f) => el("li", {}, f))) : null)));
    const table = b.results.length ? el("table", { class: "tests" },
      el("caption", {}, `${t("tests_summary")}: ${b.summary}`),
      el("thead", {}, el("tr", {}, [t("outcome"), t("case_name"), t("got")].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows)) : el("p", {}, t("tests_none"));
    replace(target,
      el("p", { class: b.failed || b.errors.length ? "verdict-note fail" : "verdict-note pass", id: "tests-summary" }, `${t("tests_summary")}: ${b.summary}`),
      Object.keys(files).length ? null : el("p", { class: "muted" }, t("tests_loaded_note")),
      el("h3", {}, t("changed")),
      b.changed.length ? el("ul", {}, b.changed.map((c) => el("li", {}, c))) : el("p", { class: "muted" }, t("no_change")),
      b.errors.length ? [el("h3", {}, t("test_file_errors")), el("ul", { class: "errors" }, b.errors.map((e) => el("li", {}, el("code", {}, `${e.file}:${e.line}:${e.col}`), " ", e.message)))] : null,
      table);
  }

  // --- wiring ---------------------------------------------------------------------------------

  function setup() {
    setupAuth();
    setupLanguage();
    setupTabs();
    $("op-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      state.last.decide = decide;
      decide();
    });
    $("explain-btn").addEventListener("click", () => { state.last.decide = explainDecision; explainDecision(); });
    $("f-access-add").addEventListener("click", () => addAccessDate(""));
    $("rule-filter").addEventListener("input", renderPolicies);
    $("only-uncovered").addEventListener("change", renderPolicies);
    $("copy-btn").addEventListener("click", () => editCopy($("copy-from").value));
    $("check-btn").addEventListener("click", () => { state.last.edit = checkEdited; checkEdited(); });
    $("test-btn").addEventListener("click", () => { state.last.edit = runTests; runTests(); });
    for (const ev of ["keyup", "click", "select", "input", "focus"]) $("editor").addEventListener(ev, updateCursor);
    loadPolicies();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setup);
  else setup();
})();
