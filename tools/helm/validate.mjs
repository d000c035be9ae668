// Validates Kubernetes objects against the pinned packages' definitions of the API:
// kubernetes-models (Kubernetes 1.36's OpenAPI) and @kubernetes-models/prometheus-operator
// (ServiceMonitor and the other monitoring CRDs). Two checks of each object:
//
//   - its JSON schema (types, enums, required fields), compiled into the packages;
//   - its fields, through the packages' TypeScript declarations: the schemas let any unknown
//     field through, and a misspelt one (`readinesProbe`) would be dropped by the API server
//     without a word.
//
//   node validate.mjs < objects.json
//
// stdin: a JSON array of objects. stdout: one line per fault, "<kind>/<name>: <fault>"; an
// object of a kind no package knows is a fault, never skipped. Exit status 1 on any fault.

import { fileURLToPath } from "node:url";
import ts from "typescript";

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

async function loadModel(object) {
    const { apiVersion, kind } = object;
    if (typeof apiVersion !== "string" || typeof kind !== "string") {
        return null;
    }
    try {
        const model = (await import(modelPath(apiVersion, kind)))[kind];
        return typeof model === "function" ? model : null;
    } catch {
        return null;
    }
}

function validateSchema(model, object) {
    try {
        new model(object).validate();
    } catch (err) {
        return [err.message];
    }
    return [];
}

// Type-checks every object as a literal of its model's interface, one object a line of a
// module that exists only in memory, beside this file so that the packages resolve from it.
function checkFields(objects) {
    const file = fileURLToPath(new URL("objects.ts", import.meta.url));
    const lines = objects.map(({ object }, i) =>
        `import type { I${object.kind} as T${i} } from "${modelPath(object.apiVersion, object.kind)}";`);
    objects.forEach(({ object }, i) => lines.push(`export const o${i}: T${i} = ${JSON.stringify(object)};`));
    const source = lines.join("\n");

    const options = {
        strict: true, noEmit: true, skipLibCheck: true, types: [],
        module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext,
    };
    const host = ts.createCompilerHost(options);
    const { getSourceFile, fileExists, readFile } = host;
    host.getSourceFile = (name, language, ...rest) => name === file
        ? ts.createSourceFile(name, source, language)
        : getSourceFile.call(host, name, language, ...rest);
    host.fileExists = (name) => name === file || fileExists.call(host, name);
    host.readFile = (name) => name === file ? source : readFile.call(host, name);

    const faults = objects.map(() => []);
    for (const d of ts.getPreEmitDiagnostics(ts.createProgram([file], options, host))) {
        const message = ts.flattenDiagnosticMessageText(d.messageText, " ");
        const line = d.file?.fileName === file
            ? d.file.getLineAndCharacterOfPosition(d.start).line - objects.length : -1;
        if (line >= 0 && line < objects.length) {
            faults[line].push(message);
        } else {
            faults[0].push(`type check: ${message}`);
        }
    }
    return faults;
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

const known = [];
let faults = 0;
const report = (object, fault) => {
    console.log(`${object?.kind ?? "?"}/${object?.metadata?.name ?? "?"}: ${fault}`);
    faults++;
};
for (const object of JSON.parse(Buffer.concat(chunks).toString("utf8"))) {
    const model = await loadModel(object);
    if (model === null) {
        report(object, `no schema for ${object?.apiVersion} ${object?.kind}`);
        continue;
    }
    validateSchema(model, object).forEach((fault) => report(object, fault));
    known.push({ object });
}
if (known.length) {
    checkFields(known).forEach((list, i) => list.forEach((fault) => report(known[i].object, fault)));
}
process.exit(faults ? 1 : 0);
