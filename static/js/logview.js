// A job's log as a virtual list: every line is kept, only the rows in view are in the DOM,
// so 100,000 lines open and scroll like 100. Search and a level filter narrow the view;
// "Follow" keeps the newest line in view until the user scrolls up, and comes back on
// when they scroll to the bottom again.
import { el } from "./herald.js";
import { formatClock, formatCount } from "./format.js";

/** Rows drawn above and below the visible ones, so a fast scroll never shows a gap. */
const OVERSCAN = 20;

export class LogView {
  /**
   * ``container`` is the scrolling role="log" element holding a ``.log-spacer`` and a
   * ``.log-rows``; the options are the search box, level select, Follow checkbox, the
   * count and "no lines" texts.
   */
  constructor(container, { search, level, follow, count, empty }) {
    this.container = container;
    this.spacer = container.querySelector(".log-spacer");
    this.rowsEl = container.querySelector(".log-rows");
    this.searchEl = search;
    this.levelEl = level;
    this.followEl = follow;
    this.countEl = count;
    this.emptyEl = empty;
    /** Every line: {seq, time, level, text, lower}. */
    this.lines = [];
    /** Indices into ``lines`` that match the search and level, or null for all. */
    this.visible = null;
    this.query = "";
    this.level = "";
    this.rowHeight = 20;
    this.pending = false;
    this.drawn = { first: -1, last: -1, size: -1 };
    /** While stored events are read: {done, total} seqs, shown beside the count. */
    this.loading = null;
    container.addEventListener("scroll", () => this.onScroll(), { passive: true });
    search.addEventListener("input", () => this.setFilter());
    level.addEventListener("change", () => this.setFilter());
    follow.addEventListener("change", () => { if (follow.checked) this.scrollToEnd(); });
    window.addEventListener("resize", () => this.schedule());
  }

  get following() { return this.followEl.checked; }

  /** Say how far reading the stored events has come (null: done). */
  setLoading(progress) {
    this.loading = progress;
    this.schedule();
  }

  /** Add one ``job_log`` (or seed-003 ``log``) message. */
  add(message) {
    const { level = "info", message: text = "" } = message.data || {};
    const line = { seq: message.seq, time: message.timestamp, level, text: String(text) };
    line.lower = line.text.toLowerCase();
    this.lines.push(line);
    if (this.visible && this.matches(line)) this.visible.push(this.lines.length - 1);
    this.schedule();
  }

  matches(line) {
    return (!this.level || line.level === this.level) && (!this.query || line.lower.includes(this.query));
  }

  setFilter() {
    this.query = this.searchEl.value.trim().toLowerCase();
    this.level = this.levelEl.value;
    if (!this.query && !this.level) this.visible = null;
    else {
      this.visible = [];
      for (let i = 0; i < this.lines.length; i++) if (this.matches(this.lines[i])) this.visible.push(i);
    }
    this.drawn.size = -1;
    this.container.scrollTop = this.following ? this.container.scrollHeight : 0;
    this.schedule();
  }

  get size() { return this.visible ? this.visible.length : this.lines.length; }

  lineAt(i) { return this.lines[this.visible ? this.visible[i] : i]; }

  /** Draw once per frame, however many lines arrived. */
  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.render(); });
  }

  scrollToEnd() {
    this.container.scrollTop = this.container.scrollHeight;
    this.schedule();
  }

  onScroll() {
    const c = this.container;
    const atBottom = c.scrollHeight - c.scrollTop - c.clientHeight < this.rowHeight;
    if (this.followEl.checked !== atBottom) this.followEl.checked = atBottom;
    this.schedule();
  }

  render() {
    const size = this.size;
    this.spacer.style.height = `${size * this.rowHeight}px`;
    // A short log takes the room it needs; a long one a fixed window (the CSS height).
    this.container.style.height = size < 16 ? `${Math.max(3, size) * this.rowHeight + 18}px` : "";
    if (this.following) this.container.scrollTop = this.container.scrollHeight;
    const top = this.container.scrollTop;
    const height = this.container.clientHeight || 320;
    const first = Math.max(0, Math.floor(top / this.rowHeight) - OVERSCAN);
    const last = Math.min(size, Math.ceil((top + height) / this.rowHeight) + OVERSCAN);
    this.countEl.textContent = this.visible
      ? `${formatCount(size)} of ${formatCount(this.lines.length)} lines match`
      : `${formatCount(this.lines.length)} ${this.lines.length === 1 ? "line" : "lines"}`;
    if (this.loading) this.countEl.textContent += ` · reading events ${formatCount(this.loading.done)} of ${formatCount(this.loading.total)}…`;
    this.emptyEl.hidden = this.lines.length > 0;
    if (first === this.drawn.first && last === this.drawn.last && size === this.drawn.size) return;
    this.drawn = { first, last, size };
    this.rowsEl.style.transform = `translateY(${first * this.rowHeight}px)`;
    const rows = [];
    for (let i = first; i < last; i++) rows.push(this.row(this.lineAt(i), i));
    this.rowsEl.replaceChildren(...rows);
  }

  row(line, index) {
    const msg = el("span", { class: "msg" });
    if (this.query) highlight(msg, line.text, this.query);
    else msg.textContent = line.text;
    return el("div", { class: `log-line level-${line.level}`, "data-seq": String(line.seq), "data-index": String(index) },
      el("span", { class: "time", text: formatClock(line.time) }), " ",
      el("span", { class: "level", text: line.level }), " ", msg);
  }
}

/** ``text`` into ``node`` with each occurrence of ``query`` (lower case) in a <mark>. */
function highlight(node, text, query) {
  const lower = text.toLowerCase();
  let at = 0;
  for (let hit = lower.indexOf(query); hit !== -1; hit = lower.indexOf(query, at)) {
    if (hit > at) node.append(text.slice(at, hit));
    node.append(el("mark", { text: text.slice(hit, hit + query.length) }));
    at = hit + query.length;
  }
  if (at < text.length) node.append(text.slice(at));
}
