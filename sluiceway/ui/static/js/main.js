// Entry point: a two-page hash router (Explore, Pipeline). Each page is built on entry and
// torn down on exit so its timers and websockets stop with it.
import { explorePage } from "./explore.js";
import { pipelinePage } from "./pipeline.js";
import { buildInfo } from "./api.js";
import * as route from "./route.js";

const app = document.getElementById("app");
const PAGES = { explore: explorePage, pipeline: pipelinePage };
let page = null, pageName = null;

function show() {
  const { page: name, params } = route.current();
  const target = PAGES[name] ? name : "explore";
  if (target === pageName && page.load) { page.load(params); return; }
  page?.destroy?.();
  app.replaceChildren();
  pageName = target;
  page = PAGES[target](params);
  app.append(page.root);
  document.title = `${target === "pipeline" ? "Pipeline" : "Explore"} · Sluiceway`;
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === target);
}

window.addEventListener("hashchange", show);
show();

buildInfo().then((b) => {
  document.getElementById("server-info").textContent = `${b.application ?? "loki"} ${b.version ?? ""}`;
}, () => {});
