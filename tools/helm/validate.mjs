// Validates Kubernetes objects against the JSON schemas of the pinned packages:
// kubernetes-models (the Kubernetes API's OpenAPI schemas) and
// @kubernetes-models/prometheus-operator (ServiceMonitor and the other monitoring CRDs).
//
//   node validate.mjs < objects.json
//
// stdin: a JSON array of objects. stdout: one line per fault, "<kind>/<name>: <fault>"; an
// object of a kind no package knows is a fault, never skipped. Exit status 1 on any fault.

const CRD_PACKAGES = {
    "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};
const MAX_INPUT = 16 * 1024 * 1024;

function modelPath(apiVersion, kind) {
    const slash = apiVersion.indexOf("/");
    if (slash < 0) {
        return `kubernetes-models/${apiVersion}/${kind}`;
    }
    const group = apiVersion.slice(0, slash);
    const pkg = CRD_PACKAGES[group] ?? "kubernetes-models";
    return `${pkg}/${apiVersion}/${kind}`;
}

async function validate(object) {
    const { apiVersion, kind } = object;
    if (typeof apiVersion !== "string" || typeof kind !== "string") {
        return ["no apiVersion or kind"];
    }
    let model;
    try {
        model = (await import(modelPath(apiVersion, kind)))[kind];
    } catch {
        return [`no schema for ${apiVersion} ${kind}`];
    }
    if (typeof model !== "function") {
        return [`no schema for ${apiVersion} ${kind}`];
    }
    try {
        new model(object).validate();
    } catch (err) {
        return [err.message];
    }
    return [];
}

const chunks = [];
let size = 0;
for await (const chunk of process.stdin) {
    size += chunk.length;
    if (size > MAX_INPUT) {
        console.log(`input: more than ${MAX_INPUT} bytes`);
        process.exit(1);
    }
    chunks.push(chunk);
}
const objects = JSON.parse(Buffer.concat(chunks).toString("utf8"));
let faults = 0;
for (const object of objects) {
    const name = `${object?.kind ?? "?"}/${object?.metadata?.name ?? "?"}`;
    for (const fault of await validate(object)) {
        console.log(`${name}: ${fault}`);
        faults++;
    }
}
process.exit(faults ? 1 : 0);
