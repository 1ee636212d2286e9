// Entry point of `pipeline.html`: the Pipeline page alone, on an agent's own listen address
// (its `/sluiceway/api/v1/pipeline`), for when the server's UI cannot load.
import { pipelinePage } from "./pipeline.js";

const page = pipelinePage(new URLSearchParams(location.search), { standalone: true });
document.getElementById("app").append(page.root);
