// A chat room's live client: no framework, no CDN (the site's Content-Security-Policy
// allows its own files only).
//
// The server's frames: {"type": "history", "messages": [...]} on every (re)connect,
// then {"type": "message", "id", "author", "text", "created"} for each new message,
// {"type": "error", "error": "..."} when a message of ours was refused (not stored), and
// {"type": "notice", "notice": "..."} for news about one that was. Ours: {"text": "..."}.
"use strict";

(function () {
  const chat = document.querySelector(".chat[data-socket]");
  if (!chat) return;
  const log = chat.querySelector(".chat-log");
  const status = chat.querySelector(".chat-status");
  const form = chat.querySelector(".chat-form");
  const input = form && form.querySelector("input[name=text]");
  const error = chat.querySelector(".chat-error");
  const address = new URL(chat.dataset.socket, location.href);
  address.protocol = location.protocol === "https:" ? "wss:" : "ws:";

  // Seconds before the next reconnection: doubled after each failure up to MAX_DELAY,
  // with jitter so that every open page does not come back at the same moment after
  // a restart; back to FIRST_DELAY once a connection has lasted.
  const FIRST_DELAY = 0.5;
  const MAX_DELAY = 15;
  let delay = FIRST_DELAY;
  let socket = null;
  let retryTimer = null;
  // What we sent last: given back to the input when the server refuses it.
  let lastSent = "";

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function showError(text) {
    if (!error) return;
    error.textContent = text;
    error.hidden = !text;
  }

  function timeOf(iso) {
    const when = new Date(iso);
    return when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // Built with textContent: a message is shown as text, never parsed as HTML.
  function render(message) {
    const item = document.createElement("li");
    item.className = "chat-message";
    item.dataset.id = String(message.id);
    const author = document.createElement("span");
    author.className = "chat-author";
    author.textContent = message.author || "(deleted account)";
    const time = document.createElement("time");
    time.dateTime = message.created;
    time.textContent = timeOf(message.created);
    const text = document.createElement("p");
    text.className = "chat-text";
    text.textContent = message.text;
    item.append(author, " ", time, text);
    return item;
  }

  function nearBottom() {
    return window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
  }

  function add(message) {
    // A message posted while the history was read comes both ways: show it once.
    if (log.querySelector(`[data-id="${CSS.escape(String(message.id))}"]`)) return;
    const follow = nearBottom();
    const empty = log.querySelector(".chat-empty");
    if (empty) empty.remove();
    log.append(render(message));
    if (follow) log.lastElementChild.scrollIntoView({ block: "end" });
  }

  function replace(messages) {
    log.replaceChildren(...messages.map(render));
    if (!messages.length) {
      const empty = document.createElement("li");
      empty.className = "chat-empty";
      empty.textContent = "Nobody has written here yet.";
      log.append(empty);
    }
  }

  function connect() {
    retryTimer = null;
    setStatus("connecting", "Connecting…");
    socket = new WebSocket(address);
    let opened = 0;
    socket.addEventListener("open", () => {
      opened = Date.now();
      setStatus("live", "Live: new messages appear as they are written.");
      if (form) form.hidden = false;
      if (input) input.disabled = false;
    });
    socket.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      if (frame.type === "history") replace(frame.messages);
      else if (frame.type === "message") add(frame);
      else if (frame.type === "error") {
        // Refused and not stored: the text comes back to be sent again.
        showError(frame.error);
        if (input && !input.value) input.value = lastSent;
      } else if (frame.type === "notice") showError(frame.notice);
    });
    socket.addEventListener("close", () => {
      socket = null;
      if (input) input.disabled = true;
      // A connection that lasted a while was not refused: start the backoff again.
      if (opened && Date.now() - opened > 10000) delay = FIRST_DELAY;
      const wait = delay * (0.5 + Math.random() / 2);
      delay = Math.min(delay * 2, MAX_DELAY);
      setStatus("offline", `Disconnected; trying again in ${Math.ceil(wait)} s…`);
      retryTimer = window.setTimeout(connect, wait * 1000);
    });
  }

  if (form) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text || !socket || socket.readyState !== WebSocket.OPEN) return;
      socket.send(JSON.stringify({ text }));
      lastSent = text;
      showError("");
      input.value = "";
      input.focus();
    });
  }

  // Back online (a laptop waking up): reconnect now rather than after the backoff.
  window.addEventListener("online", () => {
    if (retryTimer !== null) {
      window.clearTimeout(retryTimer);
      delay = FIRST_DELAY;
      connect();
    }
  });

  connect();
})();
