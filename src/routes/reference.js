
// Renders the service's OpenAPI document as a plain reference: operations grouped by tag, with
// their parameters, bodies, responses and security, then the schemas. Text goes into the page
// through text nodes only, never as markup, and nothing is loaded but openapi.json.
"use strict";

const METHODS = ["get", "put", "post", "delete", "patch", "options", "head", "trace"];

// The document being shown, for resolving references.
let DOC = {};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Text with `code` spans; everything else stays text.
function prose(text, tag) {
  const node = el(tag || "div", { class: "desc" });
  String(text || "").split("`").forEach((part, index) => {
    node.append(index % 2 ? el("code", {}, part) : document.createTextNode(part));
  });
  return node;
}

function anchor(kind, name) {
  return kind + "-" + String(name).replace(/[^A-Za-z0-9_-]/g, "_");
}

function refName(ref) {
  return ref.split("/").pop();
}

function typeLabel(schema) {
  if (!schema || typeof schema !== "object") return "any";
  if (schema.$ref) return refName(schema.$ref);
  if (schema.enum) return schema.enum.map((value) => JSON.stringify(value)).join(" | ");
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  for (const key of ["oneOf", "anyOf"]) {
    if (schema[key]) return schema[key].map(typeLabel).join(" | ");
  }
  if (schema.allOf) return schema.allOf.map(typeLabel).join(" & ");
  let types = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
  types = types.map((type) => {
    if (type === "array") return "array of " + typeLabel(schema.items);
    return schema.format && type !== "null" ? type + " (" + schema.format + ")" : type;
  });
  return types.length ? types.join(" | ") : "any";
}

function constraints(schema) {
  const parts = [];
  const names = {
    minimum: "min", maximum: "max", minLength: "min length", maxLength: "max length",
    minItems: "min items", maxItems: "max items", pattern: "pattern", default: "default",
    contentMediaType: "media type",
  };
  for (const [key, label] of Object.entries(names)) {
    if (schema && schema[key] !== undefined) parts.push(label + " " + JSON.stringify(schema[key]));
  }
  if (schema && schema.additionalProperties === false) parts.push("no other fields");
  return parts.length ? el("span", { class: "note" }, " (" + parts.join(", ") + ")") : null;
}

function resolve(ref) {
  const prefix = "#/components/schemas/";
  return ref.startsWith(prefix) ? ((DOC.components || {}).schemas || {})[ref.slice(prefix.length)] : undefined;
}

// A schema as a tree: references link to the schema section (a body's own reference is
// expanded once, so its fields show where they are sent), objects list their properties.
function renderSchema(schema, depth, expand) {
  const box = el("div", { class: "schema" });
  if (!schema || typeof schema !== "object") return box;
  if (schema.$ref) {
    box.append(el("a", { href: "#" + anchor("schema", refName(schema.$ref)), class: "type" }, refName(schema.$ref)));
    const target = expand ? resolve(schema.$ref) : undefined;
    if (target) box.append(renderSchema(target, depth + 1, false));
    return box;
  }
  if (schema.description && depth > 0) box.append(prose(schema.description));
  if (schema.allOf || schema.oneOf || schema.anyOf) {
    const key = schema.allOf ? "allOf" : schema.oneOf ? "oneOf" : "anyOf";
    const label = { allOf: "all of", oneOf: "one of", anyOf: "any of" }[key];
    box.append(el("div", { class: "note" }, label + ":"));
    for (const part of schema[key]) box.append(renderSchema(part, depth + 1));
    return box;
  }
  const props = schema.properties || {};
  const required = new Set(schema.required || []);
  if (Object.keys(props).length) {
    for (const [name, prop] of Object.entries(props)) {
      const row = el("div", { class: "prop" },
        el("span", { class: "prop-name" }, name), " ",
        el("span", { class: "type" }, typeLabel(prop)),
        required.has(name) ? el("span", { class: "req" }, " required") : null,
        constraints(prop));
      if (prop.description) row.append(prose(prop.description));
      const nested = prop.$ref ? null : prop.type === "array" || (Array.isArray(prop.type) && prop.type.includes("array")) ? prop.items : prop;
      if (nested && depth < 6 && (nested.properties || nested.allOf || nested.oneOf || nested.anyOf)) {
        row.append(renderSchema(nested, depth + 1));
      }
      box.append(row);
    }
  } else {
    box.append(el("div", {}, el("span", { class: "type" }, typeLabel(schema)), constraints(schema)));
  }
  return box;
}

function renderContent(content) {
  const list = el("div");
  for (const [mediaType, media] of Object.entries(content || {})) {
    list.append(el("div", { class: "note mono" }, mediaType));
    if (media.schema) list.append(renderSchema(media.schema, 0, true));
    if (media.examples) {
      const names = Object.keys(media.examples);
      list.append(el("div", { class: "note" }, "examples: ", names.map((name, i) => [i ? ", " : "", el("code", {}, name)])));
    } else if (media.example !== undefined) {
      list.append(el("div", { class: "note" }, "example: ", el("code", {}, JSON.stringify(media.example))));
    }
  }
  return list;
}

function renderSecurity(operation, doc) {
  const requirements = operation.security || doc.security || [];
  const names = requirements.flatMap((requirement) => Object.keys(requirement));
  return el("div", { class: "security" }, "Security: ",
    names.length
      ? names.map((name, i) => [i ? " or " : "", el("a", { href: "#" + anchor("security", name) }, name)])
      : "none");
}

function renderOperation(path, method, operation, doc) {
  const section = el("section", { class: "op", id: anchor("op", method + path) },
    el("div", { class: "op-head" },
      el("span", { class: "method " + method }, method),
      el("span", { class: "path" }, path),
      operation.summary ? el("span", { class: "summary" }, operation.summary) : null),
    operation.description ? prose(operation.description) : null,
    renderSecurity(operation, doc));
  const params = operation.parameters || [];
  if (params.length) {
    section.append(el("h4", {}, "Parameters"), el("table", {},
      el("tr", {}, el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "")),
      params.map((param) => el("tr", {},
        el("td", { class: "prop-name" }, param.name, param.required ? el("span", { class: "req" }, " required") : null),
        el("td", {}, param.in),
        el("td", {}, el("span", { class: "type" }, typeLabel(param.schema)), constraints(param.schema)),
        el("td", {}, param.description ? prose(param.description) : null)))));
  }
  if (operation.requestBody) {
    section.append(el("h4", {}, "Request body", operation.requestBody.required ? " (required)" : ""));
    if (operation.requestBody.description) section.append(prose(operation.requestBody.description));
    section.append(renderContent(operation.requestBody.content));
  }
  section.append(el("h4", {}, "Responses"));
  const table = el("table");
  for (const [status, response] of Object.entries(operation.responses || {})) {
    const ok = status.startsWith("1") || status.startsWith("2") || status.startsWith("3");
    table.append(el("tr", {},
      el("td", { class: "status " + (ok ? "ok" : "err") }, status),
      el("td", {}, prose(response.description), renderContent(response.content))));
  }
  section.append(table);
  const codes = operation["x-error-codes"];
  if (codes && codes.length) {
    section.append(el("div", { class: "note" }, "Error codes: ", codes.map((code, i) => [i ? ", " : "", el("code", {}, code)])));
  }
  return section;
}

function render(doc) {
  DOC = doc;
  const toc = document.getElementById("toc");
  const main = document.getElementById("content");
  toc.replaceChildren();
  main.replaceChildren();
  const info = doc.info || {};
  document.title = (info.title || "API") + " reference";
  main.append(
    el("h1", {}, info.title || "API", " ", el("span", { class: "note" }, info.version || "")),
    el("p", { class: "note" }, "OpenAPI " + doc.openapi + " · ", el("a", { href: "openapi.json" }, "openapi.json")),
    prose(info.description));

  // Operations by tag, in the order the document declares its tags.
  const groups = new Map((doc.tags || []).map((tag) => [tag.name, { tag, ops: [] }]));
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of METHODS) {
      const operation = item[method];
      if (!operation) continue;
      const name = (operation.tags && operation.tags[0]) || "other";
      if (!groups.has(name)) groups.set(name, { tag: { name }, ops: [] });
      groups.get(name).ops.push([path, method, operation]);
    }
  }
  for (const { tag, ops } of groups.values()) {
    if (!ops.length) continue;
    toc.append(el("h2", {}, tag.name));
    main.append(el("h2", { class: "tag", id: anchor("tag", tag.name) }, tag.name));
    if (tag.description) main.append(prose(tag.description));
    for (const [path, method, operation] of ops) {
      toc.append(el("a", { href: "#" + anchor("op", method + path) }, method.toUpperCase() + " " + path));
      main.append(renderOperation(path, method, operation, doc));
    }
  }

  const components = doc.components || {};
  const schemes = components.securitySchemes || {};
  if (Object.keys(schemes).length) {
    toc.append(el("h2", {}, "security"));
    main.append(el("h2", { class: "tag", id: "security" }, "Security schemes"));
    for (const [name, scheme] of Object.entries(schemes)) {
      toc.append(el("a", { href: "#" + anchor("security", name) }, name));
      main.append(el("section", { class: "op", id: anchor("security", name) },
        el("div", { class: "op-head" }, el("span", { class: "path" }, name),
          el("span", { class: "type" }, [scheme.type, scheme.scheme, scheme.bearerFormat].filter(Boolean).join(" "))),
        scheme.description ? prose(scheme.description) : null));
    }
  }
  const schemas = components.schemas || {};
  if (Object.keys(schemas).length) {
    toc.append(el("h2", {}, "schemas"));
    main.append(el("h2", { class: "tag", id: "schemas" }, "Schemas"));
    for (const [name, schema] of Object.entries(schemas)) {
      toc.append(el("a", { href: "#" + anchor("schema", name) }, name));
      main.append(el("section", { class: "op", id: anchor("schema", name) },
        el("div", { class: "op-head" }, el("span", { class: "path" }, name)),
        schema.description ? prose(schema.description) : null,
        renderSchema(schema, 0)));
    }
  }
  if (location.hash) {
    const target = document.getElementById(location.hash.slice(1));
    if (target) target.scrollIntoView();
  }
}

fetch("openapi.json", { headers: { Accept: "application/json" } })
  .then((response) => {
    if (!response.ok) throw new Error("openapi.json answered " + response.status);
    return response.json();
  })
  .then(render)
  .catch((error) => {
    document.getElementById("content").replaceChildren(el("p", {}, "Could not load openapi.json: " + error.message));
  });
