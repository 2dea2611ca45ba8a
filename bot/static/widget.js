/*
 * Chat widget of «Курская генерация». Embed it with one tag on any site:
 *
 *   <script src="https://bot.example/widget.js"></script>
 *
 * The WebSocket address and the stylesheet come from the script's own src.
 * Plain JS, no build step, no globals except a guard against double loading.
 * Customer and bot text is always set with textContent, never as HTML.
 */
(function () {
  "use strict";

  if (window.__heatdeskWidgetLoaded) return;
  window.__heatdeskWidgetLoaded = true;

  var TEXT = {
    title: "Чат с Курской генерацией",
    open: "Открыть чат с Курской генерацией",
    close: "Свернуть чат",
    placeholder: "Напишите сообщение…",
    inputLabel: "Сообщение",
    send: "Отправить",
    typing: "Бот печатает…",
    online: "На связи круглосуточно",
    connecting: "Подключаемся…",
    offline: "Нет связи. Переподключаемся…",
    notSent: "Не отправлено.",
    retry: "Повторить",
    pending: "Получено, ответ придёт чуть позже.",
    tooLong: "Сообщение слишком длинное: не больше {limit} символов.",
    you: "Вы",
    bot: "Бот",
    operator: "Оператор",
    greeting: "Здравствуйте! Я помогу передать показания, узнать задолженность, оплатить счёт или подать обращение. Напишите, что вас интересует."
  };
  var MAX_CHARS = 4096;
  var TOKEN_KEY = "heatdesk.widget.token";
  var OPEN_KEY = "heatdesk.widget.open";

  // --- where we came from ---------------------------------------------------
  var script = document.currentScript;
  if (!script) {
    var all = document.querySelectorAll('script[src*="widget.js"]');
    script = all[all.length - 1];
  }
  var base = new URL(script ? script.src : "/widget.js", window.location.href);
  var wsUrl = (base.protocol === "https:" ? "wss://" : "ws://") + base.host + "/widget/ws";
  var cssUrl = new URL("widget.css", base).href;

  // --- small helpers ----------------------------------------------------------
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    }
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function uuid() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    var b = new Uint8Array(16);
    window.crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  function store(kind) {
    try { return window[kind]; } catch (e) { return null; }
  }
  var local = store("localStorage");
  var session = store("sessionStorage");
  function getItem(s, k) { try { return s ? s.getItem(k) : null; } catch (e) { return null; } }
  function setItem(s, k, v) { try { if (s) s.setItem(k, v); } catch (e) { /* private mode */ } }

  function formatTime(iso) {
    if (!iso) return "";
    var d = new Date(iso);
    if (isNaN(d.getTime())) return "";
    try {
      return d.toLocaleTimeString("ru-RU", { hour: "2-digit", minute: "2-digit", timeZone: "Europe/Moscow" });
    } catch (e) {
      return d.toLocaleTimeString("ru-RU", { hour: "2-digit", minute: "2-digit" });
    }
  }

  // --- DOM (in a shadow root: the host page's styles do not leak in) -------
  var host = el("div", { id: "heatdesk-widget", "data-testid": "heatdesk-widget" });
  var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
  // Hidden until its stylesheet is in: no flash of an unstyled widget, and
  // scroll positions are measured on the styled layout.
  host.style.display = "none";
  var sheet = el("link", { rel: "stylesheet", href: cssUrl });
  sheet.addEventListener("load", function () { host.style.display = ""; scrollDown(); });
  sheet.addEventListener("error", function () { host.style.display = ""; });
  root.appendChild(sheet);

  var launcher = el("button", {
    type: "button", id: "hd-launcher", "class": "hd-launcher", "data-testid": "chat-launcher",
    "aria-label": TEXT.open, "aria-expanded": "false", "aria-controls": "hd-panel"
  });
  launcher.innerHTML = '<svg viewBox="0 0 24 24" width="28" height="28" aria-hidden="true" focusable="false">' +
    '<path fill="currentColor" d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z"/></svg>';
  var badge = el("span", { "class": "hd-badge", "data-testid": "chat-unread", hidden: "" });
  launcher.appendChild(badge);

  var panel = el("section", {
    id: "hd-panel", "class": "hd-panel", role: "dialog", "aria-label": TEXT.title,
    "data-testid": "chat-panel", hidden: ""
  });
  var header = el("div", { "class": "hd-header" });
  var heading = el("div", { "class": "hd-heading" });
  heading.appendChild(el("div", { "class": "hd-title", id: "hd-title" }, TEXT.title));
  var status = el("div", { "class": "hd-status", "data-testid": "chat-status", "aria-live": "polite" }, TEXT.connecting);
  heading.appendChild(status);
  var closeBtn = el("button", {
    type: "button", "class": "hd-close", "aria-label": TEXT.close, "data-testid": "chat-close"
  }, "×");
  header.appendChild(heading);
  header.appendChild(closeBtn);

  var log = el("div", {
    "class": "hd-log", role: "log", "aria-live": "polite", "aria-label": TEXT.title,
    "data-testid": "chat-log", tabindex: "0"
  });
  var typing = el("div", { "class": "hd-typing", "data-testid": "chat-typing", hidden: "", "aria-live": "polite" });
  typing.appendChild(el("span", { "class": "hd-dots", "aria-hidden": "true" }, "•••"));
  typing.appendChild(el("span", null, " " + TEXT.typing));

  var form = el("form", { "class": "hd-form", "data-testid": "chat-form" });
  var input = el("textarea", {
    "class": "hd-input", rows: "1", placeholder: TEXT.placeholder, "aria-label": TEXT.inputLabel,
    maxlength: String(MAX_CHARS), "data-testid": "chat-input", id: "hd-input"
  });
  var sendBtn = el("button", { type: "submit", "class": "hd-send", "data-testid": "chat-send" }, TEXT.send);
  form.appendChild(input);
  form.appendChild(sendBtn);

  panel.appendChild(header);
  panel.appendChild(log);
  panel.appendChild(typing);
  panel.appendChild(form);
  root.appendChild(panel);
  root.appendChild(launcher);

  // --- conversation state -------------------------------------------------
  var ws = null;
  var connected = false;      // the session frame arrived on this socket
  var attempt = 0;            // reconnect attempts since the last success
  var reconnectTimer = null;
  var pingTimer = null;
  var seen = {};              // message ids already shown
  var pending = {};           // client_id -> {frame, node} not yet acknowledged
  var pendingOrder = [];
  var waiting = 0;            // sent messages still waiting for an answer
  var started = false;

  function scrollDown() {
    log.scrollTop = log.scrollHeight;
    // Again once the new content is laid out.
    window.requestAnimationFrame(function () { log.scrollTop = log.scrollHeight; });
  }

  function setTyping(on) {
    if (on) typing.removeAttribute("hidden"); else typing.setAttribute("hidden", "");
    if (on) scrollDown();
  }

  function disableOldButtons() {
    var buttons = log.querySelectorAll(".hd-buttons button");
    Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
  }

  function bubble(sender, text, at) {
    var node = el("div", { "class": "hd-msg hd-msg--" + sender, "data-testid": "chat-message", "data-sender": sender });
    node.appendChild(el("span", { "class": "hd-sr" }, (sender === "customer" ? TEXT.you : sender === "operator" ? TEXT.operator : TEXT.bot) + ": "));
    node.appendChild(el("div", { "class": "hd-text" }, text));
    var time = formatTime(at);
    if (time) node.appendChild(el("div", { "class": "hd-time" }, time));
    return node;
  }

  function renderMessage(m, buttonsActive) {
    if (m.id !== null && m.id !== undefined) {
      if (seen[m.id]) return null;
      seen[m.id] = true;
    }
    var sender = m.sender === "customer" || m.sender === "operator" ? m.sender : "bot";
    var node = bubble(sender, m.text || "", m.at);
    if (m.id !== null && m.id !== undefined) node.setAttribute("data-id", String(m.id));
    if (m.buttons && m.buttons.length) {
      var group = el("div", { "class": "hd-buttons", role: "group" });
      m.buttons.forEach(function (b) {
        var btn = el("button", { type: "button", "class": "hd-button", "data-testid": "chat-button", "data-payload": b.payload }, b.title);
        if (!buttonsActive) btn.disabled = true;
        btn.addEventListener("click", function () { pressButton(b.title, b.payload); });
        group.appendChild(btn);
      });
      node.appendChild(group);
    }
    log.appendChild(node);
    return node;
  }

  function notice(text, kind) {
    var node = el("div", { "class": "hd-notice hd-notice--" + (kind || "info"), role: kind === "error" ? "alert" : "status", "data-testid": "chat-notice" }, text);
    log.appendChild(node);
    scrollDown();
    return node;
  }

  function renderHistory(messages) {
    log.textContent = "";
    seen = {};
    var lastCustomer = -1;
    messages.forEach(function (m, i) { if (m.sender === "customer") lastCustomer = i; });
    if (!messages.length) {
      notice(TEXT.greeting, "info");
    }
    messages.forEach(function (m, i) { renderMessage(m, i > lastCustomer); });
    // Messages typed while offline: shown again and sent now.
    pendingOrder.forEach(function (cid) {
      var p = pending[cid];
      if (!p) return;
      p.node = bubble("customer", p.frame.type === "button" ? p.frame.title : p.frame.text, null);
      p.node.classList.add("hd-pending");
      p.afterHistory = messages.some(function (m) {
        return m.sender === "customer" && m.text === (p.frame.text || p.frame.title);
      });
      log.appendChild(p.node);
      transmit(p.frame);
    });
    scrollDown();
  }

  // --- sending --------------------------------------------------------------
  function transmit(frame) {
    if (ws && connected && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  function queue(frame, shownText) {
    var node = bubble("customer", shownText, new Date().toISOString());
    node.classList.add("hd-pending");
    disableOldButtons();
    log.appendChild(node);
    pending[frame.client_id] = { frame: frame, node: node };
    pendingOrder.push(frame.client_id);
    waiting += 1;
    setTyping(true);
    scrollDown();
    transmit(frame);
  }

  function sendText() {
    var text = input.value;
    if (!text.trim()) { input.focus(); return; }
    if (text.length > MAX_CHARS) {
      notice(TEXT.tooLong.replace("{limit}", String(MAX_CHARS)), "error");
      return;
    }
    input.value = "";
    autosize();
    queue({ type: "message", text: text, client_id: uuid() }, text);
    input.focus();
  }

  function pressButton(title, payload) {
    queue({ type: "button", title: title, payload: payload, client_id: uuid() }, title);
  }

  function settle(clientId) {
    var p = pending[clientId];
    if (!p) return null;
    delete pending[clientId];
    pendingOrder = pendingOrder.filter(function (c) { return c !== clientId; });
    if (p.node) p.node.classList.remove("hd-pending");
    return p;
  }

  // Only what the server says it did NOT store is shown as not sent. The retry
  // button resends the very same frame, client_id included: the server's inbox
  // is keyed by it, so a message that did get stored is never answered twice.
  function markFailed(clientId, retryable) {
    var p = settle(clientId);
    waiting = Math.max(0, waiting - 1);
    if (!waiting) setTyping(false);
    if (!p || !p.node) return;
    p.node.classList.add("hd-failed");
    var line = el("div", { "class": "hd-failed-line" }, TEXT.notSent + " ");
    if (retryable) {
      var again = el("button", { type: "button", "class": "hd-link", "data-testid": "chat-retry" }, TEXT.retry);
      again.addEventListener("click", function () {
        line.remove();
        p.node.classList.remove("hd-failed");
        p.node.classList.add("hd-pending");
        pending[clientId] = p;
        pendingOrder.push(clientId);
        waiting += 1;
        setTyping(true);
        transmit(p.frame);
      });
      line.appendChild(again);
    }
    p.node.appendChild(line);
  }

  // --- receiving ------------------------------------------------------------
  function onFrame(data) {
    var frame;
    try { frame = JSON.parse(data); } catch (e) { return; }
    switch (frame.type) {
      case "session":
        setItem(local, TOKEN_KEY, frame.token);
        connected = true;
        attempt = 0;
        status.textContent = TEXT.online;
        panel.classList.remove("hd-offline");
        break;
      case "history":
        renderHistory(frame.messages || []);
        break;
      case "message":
        if (frame.sender === "customer") {
          // Written in another tab of this session.
          if (frame.client_id && pending[frame.client_id]) return;
          disableOldButtons();
          renderMessage(frame, false);
        } else {
          if (renderMessage(frame, true)) {
            waiting = Math.max(0, waiting - 1);
            if (panel.hasAttribute("hidden")) badge.removeAttribute("hidden");
          }
          setTyping(false);
        }
        scrollDown();
        break;
      case "ack":
        var p = settle(frame.client_id);
        if (p && frame.duplicate && p.afterHistory && p.node) p.node.remove();
        if (frame.pending) {
          // Stored, the answer comes later (the server replays it): not a failure.
          if (p && p.node) {
            p.node.appendChild(el("div", { "class": "hd-pending-line", "data-testid": "chat-accepted" }, frame.text || TEXT.pending));
          }
        }
        if (!Object.keys(pending).length) { waiting = 0; setTyping(false); }
        break;
      case "error":
        notice(frame.text, "error");
        // unavailable, rate_limited: not stored, may be sent again as it was.
        if (frame.client_id) markFailed(frame.client_id, frame.code === "unavailable" || frame.code === "rate_limited");
        else { waiting = 0; setTyping(false); }
        break;
      default:
        break;
    }
  }

  // --- connection -----------------------------------------------------------
  function connect() {
    if (ws && (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING)) return;
    clearTimeout(reconnectTimer);
    status.textContent = attempt ? TEXT.offline : TEXT.connecting;
    var socket;
    try { socket = new WebSocket(wsUrl); } catch (e) { scheduleReconnect(); return; }
    ws = socket;
    socket.onopen = function () {
      socket.send(JSON.stringify({ type: "hello", token: getItem(local, TOKEN_KEY) }));
      clearInterval(pingTimer);
      pingTimer = setInterval(function () {
        if (socket.readyState === WebSocket.OPEN) socket.send('{"type":"ping"}');
      }, 25000);
    };
    socket.onmessage = function (ev) { if (ws === socket) onFrame(ev.data); };
    socket.onclose = function () {
      if (ws !== socket) return;
      connected = false;
      clearInterval(pingTimer);
      status.textContent = TEXT.offline;
      panel.classList.add("hd-offline");
      scheduleReconnect();
    };
    socket.onerror = function () { /* onclose follows */ };
  }

  function scheduleReconnect() {
    attempt += 1;
    var delay = Math.min(15000, 500 * Math.pow(2, attempt - 1));
    delay = delay / 2 + Math.random() * delay / 2;
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connect, delay);
  }

  // --- open / close ---------------------------------------------------------
  function open() {
    panel.removeAttribute("hidden");
    launcher.setAttribute("aria-expanded", "true");
    launcher.classList.add("hd-launcher--open");
    badge.setAttribute("hidden", "");
    setItem(session, OPEN_KEY, "1");
    if (!started) { started = true; connect(); }
    scrollDown();
    input.focus();
  }

  function close() {
    panel.setAttribute("hidden", "");
    launcher.setAttribute("aria-expanded", "false");
    launcher.classList.remove("hd-launcher--open");
    setItem(session, OPEN_KEY, "0");
    launcher.focus();
  }

  function autosize() {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 120) + "px";
  }

  launcher.addEventListener("click", function () {
    if (panel.hasAttribute("hidden")) open(); else close();
  });
  closeBtn.addEventListener("click", close);
  panel.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") { ev.preventDefault(); close(); }
  });
  form.addEventListener("submit", function (ev) { ev.preventDefault(); sendText(); });
  input.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); sendText(); }
  });
  input.addEventListener("input", autosize);
  window.addEventListener("online", function () { if (started && !connected) { attempt = 0; connect(); } });

  function mount() {
    document.body.appendChild(host);
    // A returning customer (a session token kept) reconnects at once, so the
    // history is there when the panel opens; a reload keeps the panel open.
    if (getItem(local, TOKEN_KEY)) { started = true; connect(); }
    if (getItem(session, OPEN_KEY) === "1") open();
  }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
