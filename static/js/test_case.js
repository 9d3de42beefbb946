// The test-case editor: YAML with line numbers; Save sends the text as application/yaml
// and a refusal names its line (the gutter marks it, "Go to line" selects it); Save and
// run starts an api_test job and opens its page.
import { api, el, getToken, startPage } from "./herald.js";

const $ = (id) => document.getElementById(id);
let caseId = Number($("case").dataset.caseId) || null;
const conn = startPage();

const SAMPLE = `name: health check
description: the service answers
config:
  base_url: http://127.0.0.1:5000
steps:
  - name: health
    request:
      method: GET
      url: /health
    validate:
      - status_code: 200
`;

let errorLine = null;

function drawGutter() {
  const count = $("yaml").value.split("\n").length;
  const lines = [];
  for (let n = 1; n <= count; n++) lines.push(n === errorLine ? `<mark>${n}</mark>` : String(n));
  $("gutter").innerHTML = lines.join("\n");
  $("gutter").scrollTop = $("yaml").scrollTop;
}

function goToLine(line) {
  const text = $("yaml").value;
  let start = 0;
  for (let n = 1; n < line && start !== -1; n++) start = text.indexOf("\n", start) + 1;
  const end = text.indexOf("\n", start);
  $("yaml").focus();
  $("yaml").setSelectionRange(start, end === -1 ? text.length : end);
}

function showError(message) {
  const match = /^line (\d+): (.*)$/s.exec(message);
  errorLine = match ? Number(match[1]) : null;
  $("yaml-error").replaceChildren(...(match
    ? [el("strong", { text: `Line ${match[1]}: ` }), match[2], " ",
      el("button", { type: "button", class: "link", text: `Go to line ${match[1]}`, onclick: () => goToLine(errorLine) })]
    : [message]));
  $("yaml").setAttribute("aria-invalid", message ? "true" : "false");
  drawGutter();
}

/** YAML goes as text (``api`` sends JSON), with the tab's token in the header. */
async function save() {
  showError("");
  $("saved").textContent = "";
  const response = await fetch(caseId ? `/api/test-cases/${caseId}` : "/api/test-cases", {
    method: caseId ? "PUT" : "POST",
    headers: { Authorization: `Bearer ${getToken()}`, "Content-Type": "application/yaml" },
    body: $("yaml").value,
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    showError(data?.error?.message || `not saved (${response.status})`);
    return null;
  }
  const saved = data.test_case;
  if (!caseId) history.replaceState(null, "", `/test-cases/${saved.id}`);
  caseId = saved.id;
  $("case-title").textContent = `Test case #${saved.id}: ${saved.name}`;
  document.title = `Test case ${saved.id} · Herald`;
  $("run").disabled = false;
  $("run").removeAttribute("title");
  $("saved").textContent = `Saved (${saved.total_steps} ${saved.total_steps === 1 ? "step" : "steps"}).`;
  return saved;
}

$("yaml").addEventListener("input", () => { errorLine = null; drawGutter(); });
$("yaml").addEventListener("scroll", () => { $("gutter").scrollTop = $("yaml").scrollTop; });
$("save").addEventListener("click", () => save());
$("run").addEventListener("click", async () => {
  if (!(await save())) return;
  try {
    const { job } = await api(`/api/test-cases/${caseId}/run`, { method: "POST" });
    location.assign(`/jobs/${job.id}`);
  } catch (error) { showError(error.message); }
});

async function load() {
  if (!caseId) {
    $("yaml").value = SAMPLE.replace("http://127.0.0.1:5000", location.origin);
    drawGutter();
    return;
  }
  try {
    const { test_case: c } = await api(`/api/test-cases/${caseId}`);
    $("case-title").textContent = `Test case #${c.id}: ${c.name}`;
    $("yaml").value = c.source;
  } catch (error) {
    $("editor-card").hidden = true;
    $("case-missing").hidden = false;
    $("case-load-error").textContent = error.status === 404 ? `Test case ${caseId} not found.` : error.message;
  }
  drawGutter();
}

if (conn) load();
