// Form fields from a job kind's JSON Schema ``params``, and the params read back from them.
import { el } from "./herald.js";

function typesOf(schema) {
  const t = schema.type;
  return Array.isArray(t) ? t : t ? [t] : [];
}

/** Inputs for each property of ``schema``; complex values get a JSON textarea. */
export function paramFields(schema, idPrefix = "param") {
  const props = schema?.properties || {};
  const required = new Set(schema?.required || []);
  return Object.entries(props).map(([name, prop]) => {
    const id = `${idPrefix}-${name}`;
    const types = typesOf(prop).filter((t) => t !== "null");
    const type = types[0] || "string";
    const hint = prop.description ? el("small", { class: "muted", id: `${id}-hint`, text: prop.description }) : null;
    const common = { id, name, "data-type": type, "aria-describedby": hint ? `${id}-hint` : null };
    let input;
    if (prop.enum) {
      input = el("select", common, prop.enum.map((v) => el("option", { value: String(v), text: String(v) })));
      if (prop.default != null) input.value = String(prop.default);
    } else if (type === "boolean") {
      input = el("input", { ...common, type: "checkbox", checked: prop.default === true });
    } else if (type === "integer" || type === "number") {
      input = el("input", {
        ...common, type: "number", inputmode: type === "integer" ? "numeric" : "decimal",
        step: type === "integer" ? "1" : "any",
        min: prop.minimum != null ? String(prop.minimum) : null,
        max: prop.maximum != null ? String(prop.maximum) : null,
        value: prop.default != null ? String(prop.default) : "",
        required: required.has(name),
      });
    } else if (type === "string") {
      input = el("input", { ...common, type: "text", value: prop.default ?? "", required: required.has(name) });
    } else {
      input = el("textarea", {
        ...common, rows: "3", "data-type": "json", required: required.has(name),
        placeholder: type === "array" ? "JSON array, e.g. [...]" : "JSON",
      });
      input.value = prop.default != null ? JSON.stringify(prop.default) : "";
    }
    return el("p", { class: "field" }, el("label", { for: id, text: name }), " ", input, hint);
  });
}

/** Read params back; empty optional fields are left out so the server applies defaults. */
export function readParams(container) {
  const params = {};
  for (const input of container.querySelectorAll("[name]")) {
    const type = input.dataset.type;
    if (type === "boolean") { params[input.name] = input.checked; continue; }
    const raw = input.value.trim();
    if (raw === "") continue;
    if (type === "integer" || type === "number") params[input.name] = Number(raw);
    else if (type === "json") {
      try { params[input.name] = JSON.parse(raw); } catch {
        throw new Error(`${input.name}: not valid JSON`);
      }
    } else params[input.name] = raw;
  }
  return params;
}
