// The KPI dashboard: reads /console/api/kpi and draws it with Chart.js.
// The API's range is [from, to) in Moscow days; the form shows both ends
// inclusive, so "по" is the API's `to` minus one day.
(function () {
  "use strict";

  var API = "/console/api/kpi";
  var MOSCOW_OFFSET_MS = 3 * 3600 * 1000; // Europe/Moscow has kept UTC+3 since 2014
  var DAY_MS = 86400 * 1000;
  var CHANNELS = { telegram: "Telegram", whatsapp: "WhatsApp", webchat: "Сайт" };
  var COLORS = ["#0b4f8a", "#f28c28", "#2e9e5b", "#8a4fbf", "#c0392b", "#5b6876"];
  var APPEALS_TARGET = 80;
  var charts = {};

  function $(id) { return document.getElementById(id); }

  function isoDay(ms) { return new Date(ms).toISOString().slice(0, 10); }
  function parseDay(s) { return Date.parse(s + "T00:00:00Z"); }
  function moscowToday() { return isoDay(Date.now() + MOSCOW_OFFSET_MS); }
  function addDays(s, n) { return isoDay(parseDay(s) + n * DAY_MS); }
  function shortDay(s) { return s.slice(8, 10) + "." + s.slice(5, 7); }

  var numberFormat = new Intl.NumberFormat("ru-RU", { maximumFractionDigits: 1 });
  function num(v) { return v === null || v === undefined ? "—" : numberFormat.format(v); }
  function pct(v) { return v === null || v === undefined ? "—" : numberFormat.format(v) + "%"; }
  function duration(s) {
    if (s === null || s === undefined) { return "—"; }
    s = Math.round(s);
    if (s < 60) { return s + " с"; }
    if (s < 3600) { return Math.floor(s / 60) + " мин" + (s % 60 ? " " + (s % 60) + " с" : ""); }
    return Math.floor(s / 3600) + " ч " + Math.round((s % 3600) / 60) + " мин";
  }
  function minutes(s) { return s === null || s === undefined ? null : Math.round(s / 6) / 10; }
  function channelName(c) { return CHANNELS[c] || c; }

  function setText(id, text) { $(id).textContent = text; }

  function status(text, isError) {
    var el = $("status");
    el.textContent = text;
    el.className = isError ? "status error" : "status";
  }

  function range() {
    var from = $("from").value;
    var last = $("to").value;
    return { from: from, to: addDays(last, 1) };
  }

  function query(r) { return "from=" + encodeURIComponent(r.from) + "&to=" + encodeURIComponent(r.to); }

  function renderCards(k) {
    setText("k-conversations", num(k.conversations));
    setText("k-channels", k.channels.map(function (c) {
      return channelName(c.channel) + ": " + c.conversations;
    }).join(", "));
    setText("k-bot-alone", pct(k.bot_alone_pct));
    setText("k-bot-alone-n", k.bot_alone + " из " + k.conversations);
    setText("k-handoff-rate", pct(k.handoff_rate_pct));
    setText("k-handoff-n", k.handed_off + " диалогов, постановок в очередь: " + k.handoffs +
      (k.handoffs_left ? ", ушли не дождавшись: " + k.handoffs_left : ""));
    setText("k-wait", duration(k.queue_wait.median_s));
    setText("k-wait-avg", "среднее " + duration(k.queue_wait.avg_s));
    setText("k-first-response", duration(k.first_response.median_s));
    setText("k-first-response-avg", "среднее " + duration(k.first_response.avg_s));
    setText("k-handling", duration(k.handling.median_s));
    setText("k-handling-avg", "среднее " + duration(k.handling.avg_s));
    var appeals = $("k-appeals");
    appeals.textContent = pct(k.appeals.within_24h_pct);
    appeals.className = k.appeals.within_24h_pct === null ? "" :
      (k.appeals.within_24h_pct > APPEALS_TARGET ? "good" : "bad");
    setText("k-appeals-n", k.appeals.within_24h + " из " + k.appeals.counted +
      " (цель — больше " + APPEALS_TARGET + "%)");
    setText("k-nps", k.nps.score === null ? "—" : num(Math.round(k.nps.score)));
    setText("k-nps-n", "ответов: " + k.nps.responses + " (9–10: " + k.nps.promoters +
      ", 0–6: " + k.nps.detractors + ")");
  }

  function renderOperators(k) {
    var body = document.querySelector("#operators tbody");
    body.replaceChildren();
    if (!k.operators.length) {
      var row = body.insertRow();
      var cell = row.insertCell();
      cell.colSpan = 10;
      cell.className = "empty";
      cell.textContent = "Нет операторов с работой за период";
      return;
    }
    k.operators.forEach(function (o) {
      var row = body.insertRow();
      [
        o.display_name, num(o.chats), num(o.resolved), num(o.returned),
        duration(o.first_response.median_s), duration(o.first_response.avg_s),
        duration(o.handling.median_s), duration(o.handling.avg_s), num(o.messages),
        o.nps.score === null ? "—" : num(Math.round(o.nps.score)) + " (" + o.nps.responses + ")"
      ].forEach(function (text) { row.insertCell().textContent = text; });
    });
  }

  function draw(id, config) {
    if (charts[id]) { charts[id].destroy(); }
    charts[id] = new window.Chart($(id), config);
  }

  function lineSet(label, data, color, axis) {
    return {
      label: label, data: data, borderColor: color, backgroundColor: color,
      tension: 0, spanGaps: true, yAxisID: axis || "y"
    };
  }

  function renderCharts(k) {
    var labels = k.days.map(function (d) { return shortDay(d.day); });
    var channels = k.channels.map(function (c) { return c.channel; });
    draw("chart-channels", {
      type: "bar",
      data: {
        labels: labels,
        datasets: channels.map(function (c, i) {
          return {
            label: channelName(c), backgroundColor: COLORS[i % COLORS.length],
            data: k.days.map(function (d) { return d.by_channel[c] || 0; })
          };
        })
      },
      options: {
        maintainAspectRatio: false,
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } }
      }
    });
    draw("chart-bot", {
      type: "line",
      data: {
        labels: labels,
        datasets: [
          lineSet("Бот справился сам", k.days.map(function (d) { return d.bot_alone_pct; }), COLORS[2]),
          lineSet("Передано операторам", k.days.map(function (d) {
            return d.bot_alone_pct === null ? null : 100 - d.bot_alone_pct;
          }), COLORS[1])
        ]
      },
      options: { maintainAspectRatio: false, scales: { y: { min: 0, max: 100 } } }
    });
    draw("chart-times", {
      type: "line",
      data: {
        labels: labels,
        datasets: [
          lineSet("Ожидание в очереди", k.days.map(function (d) { return minutes(d.queue_wait_median_s); }), COLORS[5]),
          lineSet("Первый ответ", k.days.map(function (d) { return minutes(d.first_response_median_s); }), COLORS[0]),
          lineSet("Обработка", k.days.map(function (d) { return minutes(d.handling_median_s); }), COLORS[1])
        ]
      },
      options: { maintainAspectRatio: false, scales: { y: { beginAtZero: true, title: { display: true, text: "мин" } } } }
    });
    draw("chart-quality", {
      type: "line",
      data: {
        labels: labels,
        datasets: [
          lineSet("Обращения за 24 ч, %", k.days.map(function (d) { return d.appeals_within_24h_pct; }), COLORS[0]),
          Object.assign(lineSet("Цель, %", k.days.map(function () { return APPEALS_TARGET; }), "#b42318"),
            { borderDash: [6, 4], pointRadius: 0 }),
          lineSet("NPS", k.days.map(function (d) { return d.nps; }), COLORS[2])
        ]
      },
      options: { maintainAspectRatio: false, scales: { y: { min: -100, max: 100 } } }
    });
  }

  function load() {
    var r = range();
    if (!r.from || !$("to").value || r.from >= r.to) {
      status("Укажите период: дата начала не позже даты конца.", true);
      return;
    }
    $("csv-days").href = API + ".csv?" + query(r) + "&table=days";
    $("csv-operators").href = API + ".csv?" + query(r) + "&table=operators";
    status("Загрузка…", false);
    fetch(API + "?" + query(r), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401) {
          window.location.assign("/console"); // the session ended: the login form
          throw new Error("Войдите в консоль заново.");
        }
        if (response.status === 403) { throw new Error("Показатели доступны только супервизорам."); }
        return response.json().then(function (body) {
          if (!response.ok) {
            throw new Error(typeof body.detail === "string" ? body.detail : "Не удалось загрузить показатели.");
          }
          return body;
        });
      })
      .then(function (k) {
        renderCards(k);
        renderCharts(k);
        renderOperators(k);
        status("Период: " + shortDay(k.start) + "–" + shortDay(addDays(k.end, -1)) + "." + k.start.slice(0, 4), false);
        document.body.dataset.loaded = "true";
      })
      .catch(function (err) {
        status(err.message || "Не удалось загрузить показатели.", true);
      });
  }

  function preset(days) {
    var today = moscowToday();
    $("to").value = today;
    $("from").value = addDays(today, 1 - days);
    load();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var params = new URLSearchParams(window.location.search);
    var today = moscowToday();
    $("to").value = params.get("to") ? addDays(params.get("to"), -1) : today;
    $("from").value = params.get("from") || addDays($("to").value, -6);
    $("range").addEventListener("submit", function (e) { e.preventDefault(); load(); });
    document.querySelectorAll(".presets button").forEach(function (b) {
      b.addEventListener("click", function () { preset(Number(b.dataset.days)); });
    });
    load();
  });
})();
