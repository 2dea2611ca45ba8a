// The operator console: queue, my chats, one chat with the customer's card.
// Plain DOM, no build step; every text goes in through textContent.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const CHANNELS = { webchat: "Сайт", telegram: "Telegram", whatsapp: "WhatsApp", cli: "Терминал" };
  const SENDERS = { customer: "Клиент", bot: "Бот", operator: "Оператор", system: "Система" };
  const STATUSES = {
    registered: "Зарегистрировано",
    in_review: "На рассмотрении",
    answered: "Дан ответ",
    resolved: "Решено",
    rejected: "Отклонено",
    closed: "Закрыто",
  };
  const CATEGORIES = {
    charges: "Начисления и перерасчёт",
    heating_quality: "Качество отопления",
    hot_water_quality: "Качество горячей воды",
    meter: "Приборы учёта",
    emergency: "Авария",
    callback: "Обратный звонок",
    debt_certificate: "Справка об отсутствии долга",
    other: "Другое",
  };
  const OUTCOMES = { resolved: "решён", returned: "возвращён боту", left: "клиент ушёл", callback: "обратный звонок" };
  const ROLE_RANK = { operator: 0, supervisor: 1, admin: 2 };

  const state = {
    me: null,
    csrf: "",
    current: null,
    chat: null,
    cardKey: "",
    canned: [],
    socket: null,
    retry: 1000,
  };

  // ---------------------------------------------------------------- helpers

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function time(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    const sameDay = d.toDateString() === new Date().toDateString();
    const opts = sameDay
      ? { hour: "2-digit", minute: "2-digit" }
      : { day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit" };
    return d.toLocaleString("ru-RU", opts);
  }

  function waited(iso) {
    const minutes = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 60000));
    return minutes < 60 ? `${minutes} мин` : `${Math.floor(minutes / 60)} ч ${minutes % 60} мин`;
  }

  function money(value) {
    const n = Number(value);
    const text = Math.abs(n).toLocaleString("ru-RU", { minimumFractionDigits: 2 }) + " ₽";
    if (n > 0) return "долг " + text;
    if (n < 0) return "переплата " + text;
    return "0,00 ₽";
  }

  function toast(text) {
    const node = $("toast");
    node.textContent = text;
    node.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => (node.hidden = true), 5000);
  }

  async function api(method, path, body) {
    const opts = { method, credentials: "same-origin", headers: {} };
    if (method !== "GET") {
      opts.headers["X-CSRF-Token"] = state.csrf;
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body || {});
    }
    const res = await fetch("/console/api" + path, opts);
    if (res.status === 401) {
      window.location.replace("/console");
      throw new Error("logged out");
    }
    let data = null;
    try {
      data = await res.json();
    } catch (_) {
      data = null;
    }
    if (!res.ok) {
      const detail = (data && typeof data.detail === "string" && data.detail) || "Не получилось.";
      toast(detail);
      throw new Error(detail);
    }
    return data;
  }

  // ---------------------------------------------------------------- lists

  function chatLabel(item) {
    return item.display_name || "Клиент без имени";
  }

  function renderQueue(items) {
    const list = $("queue");
    list.replaceChildren();
    $("queue-count").textContent = items.length;
    for (const item of items) {
      const li = el("li", "chat-item queue-item");
      li.dataset.conversationId = item.conversation_id;
      const head = el("div", "item-head");
      head.append(el("span", "item-name", chatLabel(item)));
      head.append(el("span", "item-channel", CHANNELS[item.channel] || item.channel));
      head.append(el("span", "item-wait", waited(item.waiting_since)));
      li.append(head);
      if (item.priority > 0) li.classList.add("urgent");
      li.append(el("pre", "item-summary", item.summary));
      const take = el("button", "take-button", "Взять");
      take.type = "button";
      take.addEventListener("click", async (event) => {
        event.stopPropagation();
        await api("POST", `/chats/${item.conversation_id}/take`);
        await refreshLists();
        await openChat(item.conversation_id);
      });
      li.append(take);
      li.addEventListener("click", () => openChat(item.conversation_id));
      if (state.current === item.conversation_id) li.classList.add("active");
      list.append(li);
    }
  }

  function renderMine(items) {
    const list = $("mine");
    list.replaceChildren();
    $("mine-count").textContent = items.length;
    for (const item of items) {
      const li = el("li", "chat-item mine-item");
      li.dataset.conversationId = item.conversation_id;
      const head = el("div", "item-head");
      head.append(el("span", "item-name", chatLabel(item)));
      head.append(el("span", "item-channel", CHANNELS[item.channel] || item.channel));
      head.append(el("span", "item-wait", time(item.last_message_at)));
      li.append(head);
      if (item.last_customer_text) li.append(el("p", "item-last", item.last_customer_text));
      li.addEventListener("click", () => openChat(item.conversation_id));
      if (state.current === item.conversation_id) li.classList.add("active");
      list.append(li);
    }
  }

  async function refreshLists() {
    const [queue, mine] = await Promise.all([api("GET", "/queue"), api("GET", "/chats")]);
    renderQueue(queue.queue);
    renderMine(mine.chats);
  }

  // ---------------------------------------------------------------- one chat

  function renderTranscript(messages) {
    const list = $("transcript");
    list.replaceChildren();
    for (const m of messages) {
      const li = el("li", `line from-${m.sender}`);
      li.dataset.sender = m.sender;
      const meta = el("span", "line-meta", `${SENDERS[m.sender] || m.sender} · ${time(m.at)}`);
      li.append(meta, el("p", "line-text", m.text));
      list.append(li);
    }
    list.scrollTop = list.scrollHeight;
  }

  function renderNotes(notes) {
    const list = $("notes");
    list.replaceChildren();
    for (const n of notes) {
      const li = el("li", "note-item");
      li.append(el("span", "line-meta", `${n.operator_name} · ${time(n.at)}`));
      li.append(el("p", "line-text", n.text));
      list.append(li);
    }
  }

  function renderWindow(wa) {
    const node = $("wa-window");
    // Outside the window a reply can go only as the approved template: the
    // button says so.
    $("reply-send").textContent = wa && !wa.open && wa.template ? "Отправить шаблоном" : "Отправить";
    if (!wa) {
      node.hidden = true;
      return;
    }
    node.hidden = false;
    node.classList.toggle("closed", !wa.open);
    if (wa.open) {
      node.textContent = `Окно WhatsApp открыто до ${time(wa.closes_at)}: можно писать свободным текстом.`;
    } else if (wa.template) {
      node.textContent =
        "Окно WhatsApp закрыто (клиент не писал больше 24 часов): ответ уйдёт одобренным шаблоном «Ответ по вашему обращению: …».";
    } else {
      node.textContent =
        "Окно WhatsApp закрыто, а шаблон не настроен: ответ дойдёт, только когда клиент напишет снова.";
    }
  }

  function appealRow(appeal) {
    const li = el("li", "appeal");
    li.dataset.appealId = appeal.id;
    li.dataset.number = appeal.number;
    li.append(el("span", "appeal-number", appeal.number));
    li.append(el("span", `appeal-status status-${appeal.status}`, STATUSES[appeal.status] || appeal.status));
    li.append(el("p", "appeal-text", `${CATEGORIES[appeal.category] || appeal.category}: ${appeal.description}`));
    if (["registered", "in_review"].includes(appeal.status)) {
      li.append(el("p", "appeal-due", `Решение до ${time(appeal.decision_due_at)}`));
    }
    const form = el("form", "status-form");
    const select = el("select", "status-select");
    select.setAttribute("aria-label", "Новый статус");
    for (const value of appeal.next_statuses) {
      const option = el("option", "", STATUSES[value] || value);
      option.value = value;
      select.append(option);
    }
    const comment = el("input", "status-comment");
    comment.placeholder = "Комментарий для клиента";
    comment.maxLength = 2000;
    const button = el("button", "status-button", "Сменить статус");
    button.type = "submit";
    form.append(select, comment, button);
    form.hidden = appeal.next_statuses.length === 0;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      await api("POST", `/appeals/${appeal.id}/status`, { status: select.value, comment: comment.value || null });
      toast(`Статус обращения ${appeal.number} изменён, клиент получит уведомление.`);
      await reloadChat();
    });
    li.append(form);
    return li;
  }

  function renderCard(card) {
    const body = $("card-body");
    body.replaceChildren();
    const who = el("div", "card-who");
    who.append(el("p", "card-name", card.names.join(", ") || card.display_name || "Не привязан к лицевому счёту"));
    if (card.phone_masked) who.append(el("p", "card-phone", card.phone_masked));
    body.append(who);

    if (card.accounts.length) {
      body.append(el("h3", "", "Лицевые счета"));
      const list = el("ul", "accounts");
      for (const a of card.accounts) {
        const li = el("li", "account" + (a.current ? " current" : ""));
        li.append(el("p", "account-number", `№ ${a.number}${a.current ? " (в этом чате)" : ""}`));
        li.append(el("p", "account-address", a.address));
        li.append(el("p", "account-balance", money(a.balance)));
        for (const m of a.meters) {
          const readings = m.readings.map((r) => `${Number(r.value).toLocaleString("ru-RU")} (${time(r.taken_at)})`);
          li.append(el("p", "meter", `${m.meter_type === "heating" ? "Отопление" : "ГВС"} ${m.serial}, ${m.unit}: ${readings.join("; ") || "нет показаний"}`));
        }
        list.append(li);
      }
      body.append(list);
    }

    body.append(el("h3", "", "Обращения"));
    if (card.appeals.length) {
      const list = el("ul", "appeals");
      for (const a of card.appeals) list.append(appealRow(a));
      body.append(list);
    } else {
      body.append(el("p", "muted", "Обращений нет."));
    }

    body.append(el("div", "", ""));
    body.lastChild.id = "card-others";
    if (card.handoffs.length) {
      body.append(el("h3", "", "Обращения к операторам"));
      const list = el("ul", "handoffs");
      for (const h of card.handoffs) {
        const outcome = h.outcome ? OUTCOMES[h.outcome] || h.outcome : "открыт";
        list.append(el("li", "handoff", `${time(h.created_at)}, ${CHANNELS[h.channel] || h.channel}: ${outcome}`));
      }
      body.append(list);
    }

    const accounts = $("appeal-account");
    accounts.replaceChildren();
    const none = el("option", "", "Без лицевого счёта");
    none.value = "";
    accounts.append(none);
    for (const a of card.accounts) {
      const option = el("option", "", `№ ${a.number}`);
      option.value = a.id;
      if (a.current) option.selected = true;
      accounts.append(option);
    }
  }

  function renderOthers(card) {
    const box = $("card-others");
    if (!box) return;
    box.replaceChildren();
    const others = card.conversations.filter((c) => !c.current);
    box.append(el("h3", "", "Другие разговоры клиента"));
    if (others.length) {
      const list = el("ul", "conversations");
      for (const c of others) {
        const li = el("li", "conversation");
        li.dataset.conversationId = c.id;
        li.textContent = `${CHANNELS[c.channel] || c.channel}: ${c.messages} сообщ., последнее ${time(c.last_message_at)}`;
        li.addEventListener("click", () => openChat(c.id));
        list.append(li);
      }
      box.append(list);
    } else {
      box.append(el("p", "muted", "Других разговоров нет."));
    }
  }

  function renderChat(data) {
    const chat = data.chat;
    state.chat = data;
    $("chat").hidden = false;
    $("card").hidden = false;
    $("chat-title").textContent = `${chat.display_name || "Клиент"} · ${CHANNELS[chat.channel] || chat.channel}`;
    let owner = "Отвечает бот";
    if (chat.owner === "queue") owner = `В очереди${chat.queue_position ? ", место " + chat.queue_position : ""}`;
    if (chat.owner === "operator") owner = data.mine ? "Ваш чат" : `Ведёт ${chat.owner_name || "другой оператор"}`;
    $("chat-owner").textContent = owner;
    $("chat-summary").textContent = chat.entry ? chat.entry.summary : "";
    $("chat-summary").hidden = !chat.entry;
    const mine = data.mine;
    $("take").hidden = mine || chat.owner === "operator";
    $("transfer").hidden = !mine;
    $("transfer-to").hidden = !mine;
    $("return").hidden = !mine;
    $("resolve").hidden = !mine;
    const canWrite = mine || chat.owner !== "operator";
    $("reply-text").disabled = !canWrite;
    $("reply-send").disabled = !canWrite;
    renderTranscript(chat.messages);
    renderNotes(chat.notes);
    renderWindow(data.whatsapp);
    // Re-drawn only when it changed: an appeal's comment being typed survives
    // the refreshes that every new message brings.
    const c = data.card;
    const cardKey = JSON.stringify([c.conversation_id, c.names, c.phone_masked, c.accounts, c.appeals, c.handoffs]);
    if (cardKey !== state.cardKey) {
      state.cardKey = cardKey;
      renderCard(c);
    }
    renderOthers(c);
    for (const li of document.querySelectorAll(".chat-item")) {
      li.classList.toggle("active", Number(li.dataset.conversationId) === chat.conversation_id);
    }
  }

  async function openChat(id) {
    state.current = id;
    renderChat(await api("GET", `/chats/${id}`));
    if (state.chat && state.chat.mine) await loadColleagues();
  }

  async function reloadChat() {
    if (state.current !== null) renderChat(await api("GET", `/chats/${state.current}`));
  }

  async function loadColleagues() {
    const data = await api("GET", "/operators");
    const select = $("transfer-to");
    select.replaceChildren();
    for (const o of data.operators) {
      const option = el("option", "", `${o.display_name}${o.presence === "away" ? " (отошёл)" : ""}`);
      option.value = o.id;
      select.append(option);
    }
    // Nobody to hand the chat to: no transfer controls at all.
    $("transfer").hidden = data.operators.length === 0;
    $("transfer-to").hidden = data.operators.length === 0;
  }

  // ---------------------------------------------------------------- canned responses

  function cannedText(item) {
    return item.text.split("{operator}").join(state.me.display_name);
  }

  function showHints() {
    const box = $("canned-hints");
    const text = $("reply-text").value;
    box.replaceChildren();
    if (!text.startsWith("/") || text.includes(" ")) {
      box.hidden = true;
      return;
    }
    const prefix = text.slice(1).toLowerCase();
    const found = state.canned.filter((c) => c.shortcut.startsWith(prefix));
    for (const item of found) {
      const li = el("li", "canned-hint");
      li.append(el("b", "", "/" + item.shortcut), el("span", "", " " + cannedText(item)));
      li.addEventListener("mousedown", (event) => {
        event.preventDefault();
        $("reply-text").value = cannedText(item);
        box.hidden = true;
      });
      box.append(li);
    }
    box.hidden = found.length === 0;
  }

  // ---------------------------------------------------------------- live updates

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${window.location.host}/console/ws`);
    state.socket = socket;
    socket.addEventListener("open", () => {
      state.retry = 1000;
      $("live").classList.add("on");
      refreshLists().catch(() => {});
      reloadChat().catch(() => {});
    });
    socket.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      if (frame.type === "logged_out") {
        window.location.replace("/console");
        return;
      }
      if (frame.type === "hello") return;
      scheduleRefresh(frame.conversation_id);
    });
    socket.addEventListener("close", () => {
      $("live").classList.remove("on");
      setTimeout(connect, state.retry);
      state.retry = Math.min(state.retry * 2, 30000);
    });
  }

  // Bursts of events (a turn writes several) become one refresh.
  let pending = null;
  let pendingChat = false;
  function scheduleRefresh(conversationId) {
    if (conversationId === undefined || conversationId === null || conversationId === state.current) {
      pendingChat = true;
    }
    if (pending) return;
    pending = setTimeout(async () => {
      pending = null;
      const chat = pendingChat;
      pendingChat = false;
      try {
        await refreshLists();
        if (chat) await reloadChat();
      } catch (_) {
        /* shown by api() */
      }
    }, 150);
  }

  setInterval(() => {
    if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send("ping");
  }, 25000);

  // ---------------------------------------------------------------- actions

  function wire() {
    $("logout").addEventListener("click", async () => {
      await api("POST", "/logout");
      window.location.replace("/console");
    });
    $("presence").addEventListener("change", async (event) => {
      await api("POST", "/presence", { presence: event.target.value });
      await refreshLists();
    });
    $("take").addEventListener("click", async () => {
      await api("POST", `/chats/${state.current}/take`);
      await refreshLists();
      await openChat(state.current);
    });
    $("return").addEventListener("click", async () => {
      await api("POST", `/chats/${state.current}/return`);
      await refreshLists();
      await reloadChat();
    });
    $("resolve").addEventListener("click", async () => {
      await api("POST", `/chats/${state.current}/resolve`);
      toast("Чат завершён: клиенту отправлен вопрос об оценке.");
      await refreshLists();
      await reloadChat();
    });
    $("transfer").addEventListener("click", async () => {
      const to = Number($("transfer-to").value);
      if (!to) return;
      await api("POST", `/chats/${state.current}/transfer`, { to_operator_id: to });
      await refreshLists();
      await reloadChat();
    });
    $("reply-text").addEventListener("input", showHints);
    $("reply-text").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        $("reply-form").requestSubmit();
      }
    });
    $("reply-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = $("reply-text").value.trim();
      if (!text || state.current === null) return;
      $("reply-send").disabled = true;
      try {
        await api("POST", `/chats/${state.current}/reply`, { text });
        $("reply-text").value = "";
        $("canned-hints").hidden = true;
        await refreshLists();
        await reloadChat();
      } finally {
        $("reply-send").disabled = false;
      }
    });
    $("note-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = $("note-text").value.trim();
      if (!text) return;
      await api("POST", `/chats/${state.current}/notes`, { text });
      $("note-text").value = "";
      await reloadChat();
    });
    const categories = $("appeal-category");
    for (const [value, label] of Object.entries(CATEGORIES)) {
      const option = el("option", "", label);
      option.value = value;
      categories.append(option);
    }
    $("appeal-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const description = $("appeal-description").value.trim();
      if (!description) return;
      const account = $("appeal-account").value;
      const done = await api("POST", `/chats/${state.current}/appeals`, {
        category: categories.value,
        description,
        account_id: account ? Number(account) : null,
      });
      $("appeal-description").value = "";
      toast(`Обращение ${done.appeal.number} зарегистрировано.`);
      await reloadChat();
    });
  }

  async function start() {
    const me = await api("GET", "/me");
    state.me = me.operator;
    state.csrf = me.csrf_token;
    $("me").textContent = `${state.me.display_name} (${state.me.login})`;
    $("presence").value = state.me.presence;
    $("kpi-link").hidden = ROLE_RANK[state.me.role] < ROLE_RANK.supervisor;
    state.canned = (await api("GET", "/canned")).canned;
    wire();
    await refreshLists();
    connect();
  }

  start().catch(() => {});
})();
