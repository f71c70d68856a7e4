// Live notice of new posts: the server sends {"id", "title", "url"} as a server-sent
// event when a post is published, and this shows a banner linking to it until it is
// dismissed. EventSource reconnects by itself after a network failure or a restart.
//
// One stream per browser, not per tab: over HTTP/1.1 a browser opens at most six
// connections to a site, and a stream held open by each of six tabs would leave none for
// the seventh tab's pages. The tab holding the Web Lock below reads the stream and relays
// each post to the others on a BroadcastChannel; when it closes, another tab takes over.
"use strict";

(function () {
  const script = document.currentScript;
  const events = script && script.dataset.events;
  if (!events || !window.EventSource) return;
  const LOCK = "blogsite:new-posts";
  const relay = window.BroadcastChannel ? new BroadcastChannel(LOCK) : null;
  const shared = Boolean(relay && navigator.locks);
  let banner = null;

  // For whoever needs to know how this page hears of posts (the browser tests wait for
  // it): "open" (it reads the stream), "relayed" (another tab does), "closed".
  function mark(state) {
    document.documentElement.dataset.live = state;
  }

  function dismiss() {
    if (banner) banner.remove();
    banner = null;
  }

  // Built with textContent: a title is shown as text, never parsed as HTML.
  function show(post) {
    if (!post || typeof post.url !== "string" || !post.url.startsWith("/")) return;
    dismiss();
    banner = document.createElement("div");
    banner.className = "live-banner";
    banner.setAttribute("role", "status");
    const text = document.createElement("p");
    text.append("New post: ");
    const link = document.createElement("a");
    link.href = post.url;
    link.textContent = post.title;
    text.append(link);
    const close = document.createElement("button");
    close.type = "button";
    close.className = "live-dismiss";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    close.addEventListener("click", dismiss);
    banner.append(text, close);
    document.body.prepend(banner);
  }

  // Read the stream until the page is left; resolves then.
  function listen() {
    return new Promise((done) => {
      const source = new EventSource(events);
      source.addEventListener("open", () => mark("open"));
      source.addEventListener("error", () => mark("closed"));
      source.addEventListener("message", (event) => {
        let post;
        try {
          post = JSON.parse(event.data);
        } catch (_) {
          return; // not a post: nothing to show
        }
        show(post);
        if (relay) relay.postMessage(post);
      });
      // Not kept open on a page being left (the back-forward cache keeps no connection).
      window.addEventListener(
        "pagehide",
        () => {
          source.close();
          done();
        },
        { once: true },
      );
    });
  }

  function start() {
    if (!shared) {
      listen();
      return;
    }
    mark("relayed");
    // Granted to one tab at a time, held until listen() resolves (its page is left); a
    // page left while still waiting for its turn drops out of the queue.
    const waiting = new AbortController();
    window.addEventListener("pagehide", () => waiting.abort(), { once: true });
    navigator.locks.request(LOCK, { signal: waiting.signal }, listen).catch(() => {});
  }

  if (relay) relay.addEventListener("message", (event) => show(event.data));
  // A page back from the back-forward cache listens again.
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) start();
  });
  start();
})();
