// /test-cases: the user's API test cases; run one, or tick several and run them as a batch.
import { api, el, startPage } from "./herald.js";
import { formatDateTime, plural } from "./format.js";

const $ = (id) => document.getElementById(id);
const conn = startPage();

function selected() {
  return [...document.querySelectorAll("#cases tbody input:checked")].map((i) => Number(i.value));
}

function updateSelection() {
  const ids = selected();
  $("selected-count").textContent = `${ids.length} selected`;
  $("run-selected").disabled = ids.length === 0;
}

async function run(caseId) {
  $("cases-error").textContent = "";
  try {
    const { job } = await api(`/api/test-cases/${caseId}/run`, { method: "POST" });
    location.assign(`/jobs/${job.id}`);
  } catch (error) { $("cases-error").textContent = error.message; }
}

async function load() {
  const { test_cases: cases } = await api("/api/test-cases?limit=1000");
  $("cases-empty").hidden = cases.length > 0;
  $("cases").tBodies[0].replaceChildren(...cases.map((c) => el("tr", { "data-case-id": String(c.id) },
    el("td", {}, el("input", { type: "checkbox", value: String(c.id), "aria-label": `Select ${c.name}`, onchange: updateSelection })),
    el("td", {}, el("a", { href: `/test-cases/${c.id}`, text: `#${c.id} ${c.name}` }),
      c.description ? el("small", { class: "muted block", text: c.description }) : null),
    el("td", { class: "num", text: plural(c.total_steps, "step") }),
    el("td", { class: "num", text: formatDateTime(c.updated_at) }),
    el("td", {},
      el("button", { type: "button", class: "secondary", text: "Run", "aria-label": `Run ${c.name}`, onclick: () => run(c.id) }), " ",
      el("a", { href: `/test-cases/${c.id}`, text: "Edit", "aria-label": `Edit ${c.name}` })))));
  updateSelection();
}

$("select-all").addEventListener("change", () => {
  for (const box of document.querySelectorAll("#cases tbody input")) box.checked = $("select-all").checked;
  updateSelection();
});
$("batch-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("cases-error").textContent = "";
  try {
    const params = { test_case_ids: selected(), concurrency: Number($("concurrency").value) || 4 };
    const { job } = await api("/api/jobs", { method: "POST", body: { kind: "batch_execution", params } });
    location.assign(`/jobs/${job.id}`);
  } catch (error) { $("cases-error").textContent = error.message; }
});

if (conn) load().catch((error) => { $("cases-error").textContent = error.message; });
