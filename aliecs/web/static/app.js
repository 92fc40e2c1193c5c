// The aliecs page: environments, a create form built from a template's public variables, and an
// environment view that follows the core's live events. Plain ES module, no build step.
//
// Everything shown comes from the REST API (/api/...); the event stream (/api/events) only says
// *that* something changed, and the page re-reads what it shows (at most a few times a second), so
// what is on screen is always what the core has now.

const SESSION_HEADER = "X-Aliecs-Session";
const EVENT_ORDER = ["CONFIGURE", "START_ACTIVITY", "STOP_ACTIVITY", "RESET", "RECOVER", "EXIT"];
const EVENT_LABEL = {
  CONFIGURE: "Configure", START_ACTIVITY: "Start run", STOP_ACTIVITY: "Stop run",
  RESET: "Reset", RECOVER: "Recover", EXIT: "Exit",
};

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// Session and operator: a lock belongs to this tab's session; the name is what others see.

function sessionId() {
  let id = sessionStorage.getItem("aliecs-session");
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    id = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    sessionStorage.setItem("aliecs-session", id);
  }
  return id;
}
const SESSION = sessionId();

function operatorName() {
  return $("operator").value.trim();
}

// ---------------------------------------------------------------------------------------------
// REST

class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const options = { method, headers: { [SESSION_HEADER]: SESSION } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let data = {};
  try {
    data = await response.json();
  } catch {
    data = { error: `${response.status} ${response.statusText}` };
  }
  if (response.status === 401) showLogin();
  if (!response.ok) throw new ApiError(data.error || response.statusText, response.status, data);
  return data;
}

// ---------------------------------------------------------------------------------------------
// Small DOM helpers (text is always set as text, never as HTML)

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function stateBadge(state) {
  return h("span", { class: `state s-${(state || "UNKNOWN").toLowerCase()}` }, state || "UNKNOWN");
}

function duration(ms) {
  if (!(ms > 0)) return "–";
  const total = Math.floor(ms / 1000);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  return [hours, minutes, seconds].map((n) => String(n).padStart(2, "0")).join(":");
}

function clock(ms) {
  if (!(ms > 0)) return "–";
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

function banner(message) {
  const node = $("banner");
  node.textContent = message || "";
  node.hidden = !message;
}

// ---------------------------------------------------------------------------------------------
// visibleif / enabledif: the original's expressions ($$name === "value", &&, ||, !, parentheses),
// evaluated by a small parser (never eval) against the form's current values.

function tokenize(text) {
  const tokens = [];
  const pattern = /\s*(\$\$[A-Za-z_][\w]*|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|-?\d+(?:\.\d+)?|===|!==|==|!=|<=|>=|&&|\|\||[!()<>]|true|false)/y;
  let position = 0;
  while (position < text.length) {
    if (/^\s*$/.test(text.slice(position))) break;
    pattern.lastIndex = position;
    const match = pattern.exec(text);
    if (!match) throw new Error(`cannot read ${JSON.stringify(text.slice(position, position + 20))}`);
    tokens.push(match[1]);
    position = pattern.lastIndex;
  }
  return tokens;
}

function evaluate(text, values) {
  const tokens = tokenize(text);
  let index = 0;
  const peek = () => tokens[index];
  const take = () => tokens[index++];
  const truthy = (v) => v === true || (typeof v === "string" && v !== "" && v !== "false");
  function primary() {
    const token = take();
    if (token === undefined) throw new Error("unexpected end");
    if (token === "(") {
      const value = or();
      if (take() !== ")") throw new Error("missing )");
      return value;
    }
    if (token === "!") return !truthy(primary());
    if (token.startsWith("$$")) return values[token.slice(2)] ?? "";
    if (token.startsWith('"') || token.startsWith("'")) return token.slice(1, -1).replace(/\\(.)/g, "$1");
    if (token === "true" || token === "false") return token;
    if (/^-?\d/.test(token)) return token;
    throw new Error(`unexpected ${token}`);
  }
  function comparison() {
    let left = primary();
    while (["===", "!==", "==", "!=", "<", ">", "<=", ">="].includes(peek())) {
      const op = take();
      const right = primary();
      const [a, b] = [String(left), String(right)];
      const numeric = !isNaN(parseFloat(a)) && !isNaN(parseFloat(b));
      const [x, y] = numeric && "<><=>=".includes(op) ? [parseFloat(a), parseFloat(b)] : [a, b];
      left = { "===": x === y, "==": x === y, "!==": x !== y, "!=": x !== y,
        "<": x < y, ">": x > y, "<=": x <= y, ">=": x >= y }[op];
    }
    return left;
  }
  function and() {
    let value = comparison();
    while (peek() === "&&") { take(); const right = comparison(); value = truthy(value) && truthy(right); }
    return value;
  }
  function or() {
    let value = and();
    while (peek() === "||") { take(); const right = and(); value = truthy(value) || truthy(right); }
    return value;
  }
  const result = or();
  if (index !== tokens.length) throw new Error(`unexpected ${tokens[index]}`);
  return truthy(result);
}

function condition(text, values) {
  if (!text || !text.trim()) return true;
  try {
    return evaluate(text, values);
  } catch (error) {
    console.warn(`cannot evaluate ${text}: ${error.message}`);
    return true;  // a condition we cannot read never hides a variable
  }
}

// ---------------------------------------------------------------------------------------------
// Environments list

const state = {
  view: "list",
  envId: "",
  env: null,
  envs: [],
  templates: [],
  busy: "",           // the transition this page is waiting for
  logTask: "",
};

async function loadList() {
  const data = await api("GET", "/api/environments");
  state.envs = data.environments;
  renderList();
}

function lockLabel(lock) {
  if (!lock) return "–";
  return lock.mine ? `${lock.operator} (you)` : lock.operator;
}

function renderList() {
  const body = $("envs").tBodies[0];
  body.replaceChildren(...state.envs.map((env) => h("tr", {
    dataset: { env: env.id },
    class: env.id === state.envId ? "selected" : "",
    onclick: () => { location.hash = `#/env/${env.id}`; },
  },
  h("td", {}, h("a", { href: `#/env/${env.id}` }, env.id)),
  h("td", {}, env.workflow),
  h("td", {}, stateBadge(env.current_transition ? `${env.state} → ${env.current_transition}` : env.state)),
  h("td", { class: "run-number" }, env.run_number || "–"),
  h("td", { class: "run-duration", dataset: { since: env.run_start_ms || 0 } }, duration(env.run_start_ms ? Date.now() - env.run_start_ms : 0)),
  h("td", {}, env.tasks),
  h("td", { class: "lock-holder" }, lockLabel(env.lock)))));
  $("no-envs").hidden = state.envs.length > 0;
}

// ---------------------------------------------------------------------------------------------
// Create form

async function loadTemplates() {
  const data = await api("GET", "/api/templates");
  state.templates = data.templates;
  const select = $("template");
  const previous = select.value;
  select.replaceChildren(...state.templates.map((t) =>
    h("option", { value: t.reference }, `${t.name}  (${t.repository}@${t.revision})`)));
  if (state.templates.some((t) => t.reference === previous)) select.value = previous;
  renderVariables();
}

function currentTemplate() {
  return state.templates.find((t) => t.reference === $("template").value);
}

function widgetFor(name, spec) {
  const id = `var-${name}`;
  const widget = (spec.widget || "editBox").toLowerCase();
  const value = spec.defaultValue ?? "";
  if (widget === "checkbox" || (spec.type === "bool" && widget === "editbox")) {
    return h("input", { id, type: "checkbox", name, checked: value === "true", dataset: { kind: "bool" } });
  }
  if (["dropdownbox", "listbox"].includes(widget) && spec.allowedValues.length) {
    const select = h("select", { id, name }, spec.allowedValues.map((v) => h("option", { value: v }, v)));
    select.value = spec.allowedValues.includes(value) ? value : spec.allowedValues[0];
    return select;
  }
  if (widget === "radiobuttonbox" && spec.allowedValues.length) {
    return h("span", { id, class: "radios", dataset: { kind: "radio", name } }, spec.allowedValues.map((v) =>
      h("label", {}, h("input", { type: "radio", name, value: v, checked: v === value }), v)));
  }
  if (widget === "combobox") {
    const list = `${id}-values`;
    return h("span", {}, h("input", { id, name, value, list }),
      h("datalist", { id: list }, spec.allowedValues.map((v) => h("option", { value: v }))));
  }
  if (spec.rows > 1) return h("textarea", { id, name, rows: spec.rows }, value);
  const type = spec.type === "number" ? "number" : "text";
  return h("input", { id, name, type, value });
}

function renderVariables() {
  const template = currentTemplate();
  $("template-description").textContent = template ? template.description : "No public template found.";
  const box = $("variables");
  box.replaceChildren();
  if (!template) return;
  const entries = Object.entries(template.variables).sort(([a, x], [b, y]) =>
    (x.panel || "").localeCompare(y.panel || "") || (x.index - y.index) || a.localeCompare(b));
  let panel = null;
  for (const [name, spec] of entries) {
    if (spec.panel && spec.panel !== panel) box.append(h("h4", {}, spec.panel));
    panel = spec.panel;
    box.append(h("label", { class: "field", dataset: { variable: name } },
      h("span", { title: spec.description || name }, spec.label || name),
      widgetFor(name, spec),
      spec.description ? h("small", { class: "muted" }, spec.description) : null));
  }
  applyConditions();
}

function formValues() {
  const values = {};
  for (const row of $("variables").querySelectorAll("[data-variable]")) {
    const name = row.dataset.variable;
    const checkbox = row.querySelector("input[type=checkbox]");
    const radio = row.querySelector("input[type=radio]:checked");
    const field = row.querySelector("input:not([type=radio]), select, textarea");
    if (checkbox) values[name] = checkbox.checked ? "true" : "false";
    else if (radio) values[name] = radio.value;
    else if (field) values[name] = field.value;
  }
  return values;
}

function applyConditions() {
  const template = currentTemplate();
  if (!template) return;
  const values = formValues();
  for (const row of $("variables").querySelectorAll("[data-variable]")) {
    const spec = template.variables[row.dataset.variable];
    row.hidden = !condition(spec.visibleIf, values);
    const enabled = condition(spec.enabledIf, values);
    for (const input of row.querySelectorAll("input, select, textarea")) input.disabled = !enabled;
  }
}

function extraVars() {
  const vars = {};
  for (const line of $("extra-vars").value.split("\n")) {
    if (!line.trim()) continue;
    const at = line.indexOf("=");
    if (at <= 0) throw new Error(`extra variable "${line.trim()}" is not name=value`);
    vars[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return vars;
}

async function createEnvironment(event) {
  event.preventDefault();
  $("create-error").textContent = "";
  const operator = operatorName();
  if (!operator) {
    $("create-error").textContent = "Enter your name as operator first (top right): you will control the new environment.";
    $("operator").focus();
    return;
  }
  const values = formValues();
  const vars = {};
  for (const row of $("variables").querySelectorAll("[data-variable]")) {
    if (!row.hidden) vars[row.dataset.variable] = values[row.dataset.variable];
  }
  let extra;
  try {
    extra = extraVars();
  } catch (error) {
    $("create-error").textContent = error.message;
    return;
  }
  $("create").disabled = true;
  $("create-status").textContent = "Deploying… (tasks are starting)";
  try {
    const env = await api("POST", "/api/environments", { workflow: $("template").value, vars: { ...vars, ...extra }, operator });
    location.hash = `#/env/${env.id}`;
  } catch (error) {
    $("create-error").textContent = error.message;
  } finally {
    $("create").disabled = false;
    $("create-status").textContent = "";
  }
}

// ---------------------------------------------------------------------------------------------
// Environment view

async function loadEnv() {
  if (!state.envId) return;
  try {
    state.env = await api("GET", `/api/environments/${encodeURIComponent(state.envId)}`);
  } catch (error) {
    if (error.status === 404) {
      state.env = null;
      $("env-error").textContent = `Environment ${state.envId} is gone (destroyed).`;
      renderEnv();
      return;
    }
    throw error;
  }
  renderEnv();
}

function renderEnv() {
  const env = state.env;
  $("env-id").textContent = state.envId;
  const badge = $("env-state");
  badge.className = `state s-${(env ? env.state : "done").toLowerCase()}`;
  badge.textContent = env ? env.state : "DONE";
  $("env-workflow").textContent = env ? env.workflow : "–";
  $("env-run").textContent = env && env.run_number ? env.run_number : "–";
  $("env-run-duration").dataset.since = env && env.run_start_ms ? env.run_start_ms : 0;
  $("env-tasks").textContent = env ? env.tasks : 0;
  renderLock(env);
  renderTransitions(env);
  renderProgress(env);
  $("env-fault").textContent = env && env.state === "ERROR" && env.error ? `In ERROR: ${env.error}` : "";
  $("tree").replaceChildren(env && env.tree ? treeNode(env.tree) : h("p", { class: "muted" }, "no role tree"));
  renderTasks();
  renderRuns(env);
  $("destroy").disabled = !(env && env.lock && env.lock.mine) || !!state.busy || !!(env && env.current_transition);
  tick();
}

function renderLock(env) {
  const lock = env ? env.lock : null;
  const text = $("lock-text");
  if (!lock) text.textContent = "Nobody controls this environment.";
  else if (lock.mine) text.textContent = `You (${lock.operator}) control this environment since ${clock(lock.since_ms)}.`;
  else text.textContent = `Controlled by ${lock.operator} since ${clock(lock.since_ms)}: transitions are theirs until they release it.`;
  $("lock-box").className = `lock ${lock ? (lock.mine ? "mine" : "theirs") : "free"}`;
  $("lock-take").hidden = !env || !!lock;
  $("lock-force").hidden = !env || !lock || lock.mine;
  $("lock-release").hidden = !env || !lock || !lock.mine;
}

function renderTransitions(env) {
  const box = $("transitions");
  const allowed = env ? env.allowed_events : [];
  const mine = !!(env && env.lock && env.lock.mine);
  box.replaceChildren(...EVENT_ORDER.filter((event) => allowed.includes(event)).map((event) => h("button", {
    type: "button",
    class: `transition t-${event.toLowerCase()}`,
    dataset: { event },
    disabled: !mine || !!state.busy,
    title: mine ? event : "take control of the environment first",
    onclick: () => runTransition(event),
  }, EVENT_LABEL[event] || event)));
  if (env && env.current_transition) box.append(h("span", { class: "muted" }, `${env.current_transition} in progress…`));
}

function renderProgress(env) {
  const progress = env ? env.progress : null;
  const box = $("progress");
  box.hidden = !progress && !state.busy;
  if (!progress) {
    if (state.busy) {
      $("progress-text").textContent = `${state.busy}: sending…`;
      $("progress-bar").style.width = "0%";
      $("progress-time").style.width = "0%";
    }
    return;
  }
  box.dataset.started = progress.started_ms || Date.now();
  box.dataset.deadline = progress.deadline_s;
  box.dataset.summary = `${progress.event}: ${progress.tasks_done} of ${progress.tasks_total} tasks ${progress.target_state}`;
  const share = progress.tasks_total ? progress.tasks_done / progress.tasks_total : 0;
  $("progress-bar").style.width = `${Math.round(share * 100)}%`;
}

function treeNode(node) {
  const label = h("span", { class: "role" }, stateBadge(node.state), " ", node.name);
  if (node.task) {
    const task = node.task;
    label.append(h("span", { class: "task-facts", dataset: { task: task.id } },
      ` ${task.host || "–"} · pid ${task.pid || "–"}`, task.critical ? "" : " · non-critical"));
  }
  if (!node.children.length) return h("div", { class: "leaf", dataset: { path: node.path } }, label);
  return h("details", { open: true, dataset: { path: node.path } }, h("summary", {}, label),
    h("div", { class: "children" }, node.children.map(treeNode)));
}

function renderTasks() {
  const tasks = state.env ? state.env.task_list : [];
  const fill = (select, values) => {
    const chosen = select.value;
    const first = select.options[0];
    select.replaceChildren(first, ...values.map((v) => h("option", { value: v }, v)));
    select.value = values.includes(chosen) ? chosen : "";
  };
  fill($("filter-state"), [...new Set(tasks.map((t) => t.state))].sort());
  fill($("filter-host"), [...new Set(tasks.map((t) => t.host).filter(Boolean))].sort());
  const wantState = $("filter-state").value;
  const wantHost = $("filter-host").value;
  const wantName = $("filter-name").value.trim().toLowerCase();
  const shown = tasks.filter((t) => (!wantState || t.state === wantState) && (!wantHost || t.host === wantHost)
    && (!wantName || t.name.toLowerCase().includes(wantName)));
  const counts = {};
  for (const task of tasks) counts[task.state] = (counts[task.state] || 0) + 1;
  $("task-counters").replaceChildren(
    h("span", {}, `${shown.length} of ${tasks.length}`),
    ...Object.entries(counts).sort().map(([s, n]) => h("span", { class: `count s-${s.toLowerCase()}`, dataset: { state: s } }, `${s} ${n}`)));
  $("tasks").tBodies[0].replaceChildren(...shown.map((task) => h("tr", {
    dataset: { task: task.id, name: task.name },
    class: task.id === state.logTask ? "selected" : "",
  },
  h("td", { title: task.role_path }, task.name),
  h("td", { class: "task-state" }, stateBadge(task.state)),
  h("td", { class: "task-host" }, task.host || "–"),
  h("td", { class: "task-pid" }, task.pid || "–"),
  h("td", {}, h("button", { type: "button", class: "small", onclick: () => showLog(task) }, "log")))));
}

function renderRuns(env) {
  const runs = env ? [...env.runs].reverse() : [];
  $("runs").tBodies[0].replaceChildren(...runs.map((run) => h("tr", { dataset: { run: run.run_number } },
    h("td", {}, run.run_number),
    h("td", {}, clock(run.start_ms)),
    h("td", {}, clock(run.end_ms || run.stop_ms)),
    h("td", { class: "run-duration", dataset: { since: run.end_ms ? 0 : run.start_ms } },
      duration((run.end_ms || Date.now()) - run.start_ms)),
    h("td", { class: `outcome o-${run.outcome}`, title: run.error || "" }, run.outcome))));
  const history = env ? [...env.history].reverse() : [];
  $("history").tBodies[0].replaceChildren(...history.map((step) => h("tr", {},
    h("td", {}, step.event),
    h("td", {}, `${step.from_state} → ${step.to_state}`),
    h("td", {}, clock(step.started_ms)),
    h("td", {}, `${step.duration_s.toFixed(2)} s`))));
}

async function showLog(task) {
  state.logTask = task.id;
  $("log").hidden = false;
  $("log-title").textContent = `${task.name} on ${task.host || "–"}`;
  await refreshLog();
  renderTasks();
}

async function refreshLog() {
  if (!state.logTask) return;
  try {
    const log = await api("GET", `/api/tasks/${encodeURIComponent(state.logTask)}/log?lines=200`);
    $("log-text").textContent = log.lines.length ? log.lines.join("\n") : "(no output yet)";
    const pre = $("log-text");
    pre.scrollTop = pre.scrollHeight;
  } catch (error) {
    $("log-text").textContent = error.message;
  }
}

async function runTransition(event) {
  $("env-error").textContent = "";
  state.busy = event;
  renderEnv();
  try {
    const answer = await api("POST", `/api/environments/${encodeURIComponent(state.envId)}/transition`, { event });
    state.env = answer.environment;
  } catch (error) {
    $("env-error").textContent = error.message;
  } finally {
    state.busy = "";
  }
  await loadEnv();
}

async function lockAction(method, force) {
  $("env-error").textContent = "";
  const operator = operatorName();
  if (method === "POST" && !operator) {
    $("env-error").textContent = "Enter your name as operator first (top right).";
    $("operator").focus();
    return;
  }
  if (force && !confirm(`Take control away from ${state.env.lock.operator}?`)) return;
  try {
    await api(method, `/api/environments/${encodeURIComponent(state.envId)}/lock`,
      method === "POST" ? { operator, force: !!force } : undefined);
  } catch (error) {
    $("env-error").textContent = error.message;
  }
  await loadEnv();
}

async function destroyEnvironment() {
  const env = state.env;
  if (!env) return;
  const running = env.state === "RUNNING";
  const question = running ? `Environment ${env.id} is RUNNING run ${env.run_number}. Stop it and destroy it?`
    : `Destroy environment ${env.id} and kill its ${env.tasks} tasks?`;
  if (!confirm(question)) return;
  state.busy = "DESTROY";
  renderEnv();
  try {
    await api("DELETE", `/api/environments/${encodeURIComponent(env.id)}${running ? "?allow_running=true" : ""}`);
    location.hash = "#/";
  } catch (error) {
    $("env-error").textContent = error.message;
  } finally {
    state.busy = "";
  }
}

// Durations and transition progress move every second without asking the server.
function tick() {
  const now = Date.now();
  for (const cell of document.querySelectorAll("[data-since]")) {
    const since = Number(cell.dataset.since);
    if (since > 0) cell.textContent = duration(now - since);
    else if (cell.id === "env-run-duration") cell.textContent = "–";
  }
  const box = $("progress");
  if (!box.hidden && box.dataset.summary && state.env && state.env.progress) {
    const elapsed = (now - Number(box.dataset.started)) / 1000;
    const deadline = Number(box.dataset.deadline);
    $("progress-text").textContent = `${box.dataset.summary} · ${elapsed.toFixed(1)} s of ${deadline} s deadline`;
    $("progress-time").style.width = `${Math.min(100, Math.round((elapsed / deadline) * 100))}%`;
  }
}

// ---------------------------------------------------------------------------------------------
// Live events: refresh what is shown, at most every 200 ms per kind.

const pending = { list: null, env: null, log: null };

function soon(kind, work, delay = 200) {
  if (pending[kind]) return;
  pending[kind] = setTimeout(async () => {
    pending[kind] = null;
    try {
      await work();
    } catch (error) {
      banner(error.message);
    }
  }, delay);
}

function eventEnvironment(data) {
  for (const value of Object.values(data)) {
    if (value && typeof value === "object" && "environmentId" in value) return value.environmentId;
  }
  return "";
}

let stream = null;

function connect() {
  if (stream) stream.close();
  stream = new EventSource("/api/events");
  stream.onopen = () => {
    $("live").textContent = "live";
    $("live").className = "live on";
    soon("list", loadList, 0);
    if (state.view === "env") soon("env", loadEnv, 0);
  };
  stream.onerror = () => {
    $("live").textContent = "reconnecting";
    $("live").className = "live off";
  };
  stream.onmessage = (message) => {
    const data = JSON.parse(message.data);
    const envId = eventEnvironment(data);
    soon("list", loadList);
    if (state.view === "env" && envId === state.envId) {
      soon("env", loadEnv, 100);
      if (state.logTask && data.taskEvent && data.taskEvent.taskid === state.logTask) soon("log", refreshLog, 300);
    }
  };
}

// ---------------------------------------------------------------------------------------------
// Login (only when the core has a token)

function showLogin() {
  const dialog = $("login");
  if (!dialog.open) dialog.showModal();
}

async function login(event) {
  event.preventDefault();
  try {
    await api("POST", "/api/login", { token: $("login-token").value });
    $("login").close();
    await start();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
}

// ---------------------------------------------------------------------------------------------
// Views (hash routes: #/, #/new, #/env/ID)

async function route() {
  const hash = location.hash || "#/";
  $("env-error").textContent = "";
  if (hash === "#/new") {
    state.view = "create";
    await loadTemplates();
  } else if (hash.startsWith("#/env/")) {
    state.view = "env";
    const envId = decodeURIComponent(hash.slice("#/env/".length));
    if (envId !== state.envId) {
      state.logTask = "";
      $("log").hidden = true;
    }
    state.envId = envId;
    await loadEnv();
  } else {
    state.view = "list";
    state.envId = "";
  }
  $("create-view").hidden = state.view !== "create";
  $("env-view").hidden = state.view !== "env";
  renderList();
}

async function start() {
  const info = await api("GET", "/api/info");
  $("core-info").textContent = `${info.product} ${info.version} · nodes ${info.nodes.map((n) => n.hostname).join(", ")}`;
  $("core-info").title = `state directory ${info.state_dir}`;
  await loadList();
  await route();
  connect();
}

function wire() {
  const name = $("operator");
  name.value = localStorage.getItem("aliecs-operator") || "";
  name.addEventListener("input", () => localStorage.setItem("aliecs-operator", name.value.trim()));
  window.addEventListener("hashchange", () => route().catch((error) => banner(error.message)));
  $("template").addEventListener("change", renderVariables);
  $("variables").addEventListener("input", applyConditions);
  $("variables").addEventListener("change", applyConditions);
  $("create-form").addEventListener("submit", createEnvironment);
  $("lock-take").addEventListener("click", () => lockAction("POST", false));
  $("lock-force").addEventListener("click", () => lockAction("POST", true));
  $("lock-release").addEventListener("click", () => lockAction("DELETE", false));
  $("destroy").addEventListener("click", destroyEnvironment);
  for (const id of ["filter-state", "filter-host", "filter-name"]) $(id).addEventListener("input", renderTasks);
  $("log-refresh").addEventListener("click", refreshLog);
  $("log-close").addEventListener("click", () => { state.logTask = ""; $("log").hidden = true; renderTasks(); });
  $("login-form").addEventListener("submit", login);
  setInterval(tick, 1000);
}

wire();
start().catch((error) => banner(error.message));
