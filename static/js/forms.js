// Form fields from a job kind's JSON Schema ``params`` (labels and help from each
// property's title and description), pickers for the ids a kind refers to (test cases,
// uploads, datasets), an ordered case list for batches, a column-aware report builder,
// and the params read back from them.
import { api, el } from "./herald.js";
import { formatBytes, formatCount } from "./format.js";

function typesOf(schema) {
  const t = schema.type;
  return Array.isArray(t) ? t : t ? [t] : [];
}

/** "log_every" → "Log every" when a property has no title. */
export function humanize(name) {
  const text = String(name).replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** What the pickers list, fetched once per form build. */
export async function loadChoices() {
  const [cases, uploads, datasets] = await Promise.all([
    api("/api/test-cases?limit=1000").then((d) => d.test_cases).catch(() => []),
    api("/api/uploads?limit=200").then((d) => d.uploads).catch(() => []),
    api("/api/datasets").then((d) => d.datasets).catch(() => []),
  ]);
  return { cases, uploads: uploads.filter((u) => u.status === "completed"), datasets };
}

/** A hidden input that carries a widget's value as JSON (read by ``readParams``). */
function hiddenValue(name, { required = false, label = name } = {}) {
  return el("input", { type: "hidden", name, "data-type": "json", "data-required": required ? "1" : null, "data-label": label });
}

function option(value, text) { return el("option", { value: String(value), text }); }

/** One select of choices; optional ones start blank ("not set") rather than forced. */
function choiceSelect(common, choices, { required, placeholder }) {
  const select = el("select", { ...common, required });
  if (!required || placeholder) select.append(option("", placeholder || "— not set —"));
  select.append(...choices);
  return select;
}

function caseLabel(c) { return `#${c.id} ${c.name} (${c.total_steps} ${c.total_steps === 1 ? "step" : "steps"})`; }

/** An ordered list of test cases (a case may appear more than once): pick, Add, remove. */
function caseListBuilder(id, name, cases, label) {
  const hidden = hiddenValue(name, { required: true, label });
  const picked = [];
  const list = el("ol", { class: "picked", id: `${id}-list`, "aria-label": `${label}, in order` });
  const select = el("select", { id, "aria-describedby": `${id}-hint` }, cases.map((c) => option(c.id, caseLabel(c))));
  const sync = () => {
    hidden.value = picked.length ? JSON.stringify(picked) : "";
    list.replaceChildren(...picked.map((caseId, index) => {
      const c = cases.find((x) => x.id === caseId);
      return el("li", { "data-case-id": String(caseId) }, `${c ? c.name : `case ${caseId}`} `,
        el("button", { type: "button", class: "link", "aria-label": `Remove ${index + 1}`, text: "remove",
          onclick: () => { picked.splice(index, 1); sync(); } }));
    }));
  };
  const add = el("button", { type: "button", class: "secondary", text: "Add case",
    onclick: () => { if (select.value) { picked.push(Number(select.value)); sync(); } } });
  const all = el("button", { type: "button", class: "secondary", text: "Add all",
    onclick: () => { picked.push(...cases.map((c) => c.id)); sync(); } });
  sync();
  return { input: el("span", { class: "row inline-row" }, select, add, all), extra: [list, hidden] };
}

/** Checkboxes for an array of enum values (report formats). */
function enumChecks(id, name, prop) {
  const hidden = hiddenValue(name, { label: prop.title || name });
  const values = prop.items.enum;
  const chosen = new Set(prop.default || []);
  const sync = () => { hidden.value = chosen.size ? JSON.stringify(values.filter((v) => chosen.has(v))) : ""; };
  const boxes = values.map((v) => el("label", { class: "check" },
    el("input", { type: "checkbox", id: `${id}-${v}`, checked: chosen.has(v),
      onchange: (e) => { if (e.target.checked) chosen.add(v); else chosen.delete(v); sync(); } }), ` ${v}`));
  sync();
  return { input: el("span", { class: "row inline-row", id, role: "group", "aria-label": prop.title || name }, ...boxes), extra: [hidden] };
}

const NUMERIC = new Set(["integer", "number", "float", "decimal"]);

/**
 * Reports over a dataset's columns: group by (checkboxes), metrics (operation + column,
 * sums and averages offered only numeric columns), one or more named reports.
 */
export function reportBuilder(id, name, datasetSelect, datasets) {
  const hidden = hiddenValue(name, { required: true, label: "Reports" });
  const box = el("div", { class: "report-builder", id });
  const reports = [];
  const columnsOf = () => datasets.find((d) => d.name === datasetSelect.value)?.columns || [];

  const sync = () => {
    const value = reports.map((r) => r.read()).filter(Boolean);
    hidden.value = value.length ? JSON.stringify(value) : "";
  };

  function addReport() {
    const n = reports.length + 1;
    const rid = `${id}-${n}`;
    const nameInput = el("input", { id: `${rid}-name`, value: n === 1 ? "summary" : `report_${n}`, pattern: "[A-Za-z0-9_\\-]{1,64}", size: "12", oninput: sync });
    const groups = el("span", { class: "row inline-row", role: "group", "aria-label": `Report ${n}: group by` });
    const metrics = el("div", { class: "metrics" });
    const metricRows = [];
    const addMetric = () => {
      const m = metricRows.length + 1;
      const op = el("select", { id: `${rid}-op-${m}`, "aria-label": `Report ${n} metric ${m}: operation`, onchange: () => { fillColumns(); sync(); } },
        ["count", "sum", "avg", "min", "max"].map((o) => option(o, o)));
      const column = el("select", { id: `${rid}-col-${m}`, "aria-label": `Report ${n} metric ${m}: column`, onchange: sync });
      const fillColumns = () => {
        const numericOnly = op.value === "sum" || op.value === "avg";
        const keep = column.value;
        const cols = columnsOf().filter((c) => !numericOnly || NUMERIC.has(c.type));
        column.replaceChildren(option("", op.value === "count" ? "(rows)" : "— column —"),
          ...cols.map((c) => option(c.name, `${c.name} (${c.type})`)));
        if (cols.some((c) => c.name === keep)) column.value = keep;
      };
      fillColumns();
      metricRows.push({ op, column, fillColumns });
      metrics.append(el("div", { class: "row inline-row" }, el("span", { class: "muted", text: `metric ${m}` }), op, column));
      sync();
    };
    const fillGroups = () => {
      const cols = columnsOf();
      // Columns whose every value differs make one group per row: offered, never pre-ticked.
      groups.replaceChildren(...cols.map((c) => el("label", { class: "check" },
        el("input", { type: "checkbox", value: c.name, id: `${rid}-group-${c.name}`, onchange: sync }), ` ${c.name}`)));
      for (const m of metricRows) m.fillColumns();
      sync();
    };
    const report = {
      refresh: fillGroups,
      read: () => {
        const metricList = metricRows.map(({ op, column }) => (column.value ? { op: op.value, column: column.value } : { op: op.value }))
          .filter((m) => m.op === "count" || m.column);
        if (!metricList.length) return null;
        const groupBy = [...groups.querySelectorAll("input:checked")].map((i) => i.value);
        return { name: nameInput.value.trim() || `report_${n}`, group_by: groupBy, metrics: metricList };
      },
    };
    reports.push(report);
    box.append(el("fieldset", { class: "report" }, el("legend", { text: `Report ${n}` }),
      el("p", { class: "row inline-row" }, el("label", { for: `${rid}-name`, text: "Report name" }), nameInput),
      el("p", {}, el("span", { class: "label", text: "Group by " }), groups,
        el("small", { class: "muted", text: "No column ticked: one total row." })),
      metrics,
      el("button", { type: "button", class: "secondary", text: "Add metric", onclick: addMetric })));
    fillGroups();
    addMetric();
  }

  datasetSelect.addEventListener("change", () => { for (const r of reports) r.refresh(); });
  const more = el("button", { type: "button", class: "secondary", text: "Add another report", onclick: () => addReport() });
  addReport();
  return { input: box, extra: [more, hidden] };
}

/**
 * Inputs for each property of ``schema``. ``choices`` (from ``loadChoices``) turns ids
 * into pickers: ``test_case_id`` a select, ``test_case_ids`` an ordered list, ``upload_id``
 * the completed uploads, ``dataset`` the datasets (an import may name a new one),
 * ``reports`` the report builder.
 */
export function paramFields(schema, idPrefix = "param", choices = null, kind = "") {
  const props = schema?.properties || {};
  const required = new Set(schema?.required || []);
  const fields = [];
  let datasetSelect = null;
  for (const [name, prop] of Object.entries(props)) {
    const id = `${idPrefix}-${name}`;
    const label = prop.title || humanize(name);
    const types = typesOf(prop).filter((t) => t !== "null");
    const type = types[0] || "string";
    const isRequired = required.has(name);
    const hint = prop.description ? el("small", { class: "muted", id: `${id}-hint`, text: prop.description }) : null;
    const common = { id, name, "data-type": type, "aria-describedby": hint ? `${id}-hint` : null };
    let input;
    let extra = [];
    if (choices && name === "test_case_id") {
      input = choiceSelect({ ...common, "data-type": "integer" }, choices.cases.map((c) => option(c.id, caseLabel(c))),
        { required: true, placeholder: choices.cases.length ? "— choose a test case —" : "no test cases yet" });
      extra = [el("a", { href: "/test-cases/new", class: "small-link", text: "New test case" })];
    } else if (choices && name === "test_case_ids") {
      ({ input, extra } = caseListBuilder(id, name, choices.cases, label));
      extra.push(el("a", { href: "/test-cases", class: "small-link", text: "Test cases" }));
    } else if (choices && name === "upload_id") {
      input = choiceSelect(common, choices.uploads.map((u) => option(u.upload_id, `${u.filename} · ${formatBytes(u.size)} · ${u.upload_id}`)),
        { required: true, placeholder: choices.uploads.length ? "— choose an upload —" : "no uploads yet" });
      extra = [el("a", { href: "/upload", class: "small-link", text: "Upload a file" })];
    } else if (choices && name === "dataset" && kind === "batch_report") {
      input = choiceSelect(common, choices.datasets.map((d) => option(d.name, `${d.name} · ${formatCount(d.row_count)} rows`)),
        { required: true, placeholder: choices.datasets.length ? "— choose a dataset —" : "no datasets yet" });
      datasetSelect = input;
    } else if (choices && name === "dataset") {
      input = el("input", { ...common, type: "text", list: `${id}-list`, required: isRequired, pattern: prop.pattern?.replace(/^\^|\$$/g, "") });
      extra = [el("datalist", { id: `${id}-list` }, choices.datasets.map((d) => option(d.name, `${formatCount(d.row_count)} rows`)))];
    } else if (choices && name === "reports" && datasetSelect) {
      ({ input, extra } = reportBuilder(id, name, datasetSelect, choices.datasets));
    } else if (type === "array" && prop.items?.enum) {
      ({ input, extra } = enumChecks(id, name, prop));
    } else if (prop.enum) {
      const hasDefault = prop.default != null;
      input = choiceSelect(common, prop.enum.map((v) => option(v, String(v))), { required: isRequired || hasDefault });
      if (hasDefault) input.value = String(prop.default);
    } else if (type === "boolean") {
      input = el("input", { ...common, type: "checkbox", checked: prop.default === true });
    } else if (type === "integer" || type === "number") {
      input = el("input", {
        ...common, type: "number", inputmode: type === "integer" ? "numeric" : "decimal",
        step: type === "integer" ? "1" : "any",
        min: prop.minimum != null ? String(prop.minimum) : null,
        max: prop.maximum != null ? String(prop.maximum) : null,
        value: prop.default != null ? String(prop.default) : "",
        required: isRequired,
      });
    } else if (type === "string") {
      input = el("input", { ...common, type: "text", value: prop.default ?? "", required: isRequired });
    } else {
      input = el("textarea", {
        ...common, rows: "3", "data-type": "json", required: isRequired,
        placeholder: type === "array" ? "JSON array, e.g. [...]" : "JSON object, e.g. {...}",
      });
      input.value = prop.default != null && JSON.stringify(prop.default) !== "{}" ? JSON.stringify(prop.default) : "";
    }
    const target = input.id === id ? input : input.querySelector(`[id="${id}"]`);
    const labelFor = target && ["SELECT", "INPUT", "TEXTAREA"].includes(target.tagName) ? id : null;
    const labelEl = labelFor ? el("label", { for: labelFor, text: label }) : el("span", { class: "label", id: `${id}-label`, text: label });
    if (!labelFor) input.setAttribute("aria-labelledby", `${id}-label`);
    fields.push(el("div", { class: "field", "data-param": name }, labelEl, isRequired ? el("span", { class: "req", "aria-hidden": "true", text: " *" }) : null,
      " ", input, ...extra, hint));
  }
  return fields;
}

/** Read params back; empty optional fields are left out so the server applies defaults. */
export function readParams(container) {
  const params = {};
  for (const input of container.querySelectorAll("[name]")) {
    const type = input.dataset.type;
    if (!type) continue;
    if (type === "boolean") { params[input.name] = input.checked; continue; }
    const raw = input.value.trim();
    if (raw === "") {
      if (input.dataset.required) throw new Error(`${input.dataset.label || input.name}: choose at least one`);
      continue;
    }
    if (type === "integer" || type === "number") params[input.name] = Number(raw);
    else if (type === "json") {
      try { params[input.name] = JSON.parse(raw); } catch {
        throw new Error(`${input.dataset.label || input.name}: not valid JSON`);
      }
    } else params[input.name] = raw;
  }
  return params;
}
