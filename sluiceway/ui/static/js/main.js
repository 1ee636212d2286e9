// Entry point: a hash router over the pages (Explore, Pipeline, Alerts, Cluster). Each page is built on entry and
// torn down on exit so its timers and websockets stop with it.
import { explorePage } from "./explore.js";
import { pipelinePage } from "./pipeline.js";
import { alertsPage } from "./alerts.js";
import { clusterPage } from "./cluster.js";
import { buildInfo, getTenant, setTenant } from "./api.js";
import * as route from "./route.js";

const app = document.getElementById("app");
const PAGES = { explore: explorePage, pipeline: pipelinePage, alerts: alertsPage, cluster: clusterPage };
const TITLES = { explore: "Explore", pipeline: "Pipeline", alerts: "Alerts", cluster: "Cluster" };
let page = null, pageName = null;

function show() {
  const { page: name, params } = route.current();
  const target = PAGES[name] ? name : "explore";
  if (target === pageName) { page.load?.(params); return; }
  page?.destroy?.();
  app.replaceChildren();
  pageName = target;
  page = PAGES[target](params);
  app.append(page.root);
  document.title = `${TITLES[target]} · Sluiceway`;
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === target);
}

// The Explore tab returns to the last query, not to an empty editor.
function rememberExplore() {
  if (route.current().page === "explore") document.querySelector("[data-nav=explore]").href = location.hash || "#/explore";
}

// Both events: browsers differ on which one fires when Back crosses pushState entries;
// show() is idempotent, so handling both is safe.
for (const ev of ["hashchange", "popstate"]) window.addEventListener(ev, () => { show(); rememberExplore(); });
window.addEventListener("routeupdate", rememberExplore);
show();

// Changing the tenant rebuilds the current page, so nothing from the old tenant lingers.
const tenantInput = document.getElementById("tenant");
tenantInput.value = getTenant();
tenantInput.addEventListener("change", () => {
  setTenant(tenantInput.value);
  pageName = null;
  show();
});

buildInfo().then((b) => {
  document.getElementById("server-info").textContent = `${b.application ?? "loki"} ${b.version ?? ""}`;
}, () => {});
