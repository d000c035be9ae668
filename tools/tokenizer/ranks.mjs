// Writes tiktoken's o200k_base ranks, as shipped by the pinned `tiktoken`
// package, in the standard ".tiktoken" format: one "base64(token) rank" line
// per token.  The package keeps them as "! <first rank> <base64> <base64> ..."
// runs of consecutive ranks.
//
//   node ranks.mjs OUTPUT
import { readFileSync, writeFileSync, renameSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const out = process.argv[2];
if (!out) {
    console.error("usage: node ranks.mjs OUTPUT");
    process.exit(2);
}

const file = require.resolve("tiktoken/encoders/o200k_base.json");
const words = JSON.parse(readFileSync(file, "utf8")).bpe_ranks.split(/\s+/);
const lines = [];
let rank = -1;

for (let i = 0; i < words.length; i++) {
    if (words[i] === "") continue;
    if (words[i] === "!") {
        rank = Number(words[++i]);
        continue;
    }
    if (rank < 0) throw new Error("ranks start without a '!' offset");
    lines.push(`${words[i]} ${rank++}\n`);
}

// written aside then renamed: an interrupted build leaves no partial file
writeFileSync(out + ".tmp", lines.join(""));
renameSync(out + ".tmp", out);
console.log(`${lines.length} ranks written`);
