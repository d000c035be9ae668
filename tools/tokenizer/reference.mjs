// tiktoken's own o200k_base encoder (the WASM build of its Rust core), the
// reference the gateway's counter is tested and measured against.
//
//   node reference.mjs                  each stdin line is a sample in hex;
//                                       prints "count id id ..." for each
//   node reference.mjs --bench SECONDS FILE...
//                                       prints "FILE bytes tokens MB/s"
//
// Samples are decoded as UTF-8 with U+FFFD for invalid bytes (and a leading
// BOM kept), since tiktoken encodes text, not bytes.
import { readFileSync } from "node:fs";
import { get_encoding } from "tiktoken";

const enc = get_encoding("o200k_base");
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

function encodeLines() {
    const lines = readFileSync(0, "latin1").split("\n");
    const out = [];
    if (lines.at(-1) === "") lines.pop();
    for (const line of lines) {
        const ids = enc.encode_ordinary(decoder.decode(Buffer.from(line, "hex")));
        out.push(`${ids.length}${ids.length ? " " : ""}${ids.join(" ")}`);
    }
    process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
}

function bench(seconds, files) {
    for (const file of files) {
        const bytes = readFileSync(file);
        const text = decoder.decode(bytes);
        const start = performance.now();
        let rounds = 0, tokens = 0, elapsed = 0;
        do {
            tokens = enc.encode_ordinary(text).length;
            rounds++;
            elapsed = (performance.now() - start) / 1000;
        } while (elapsed < seconds);
        console.log(`${file} ${bytes.length} ${tokens} ${(bytes.length * rounds / elapsed / 1e6).toFixed(2)}`);
    }
}

if (process.argv[2] === "--bench") {
    bench(Number(process.argv[3]), process.argv.slice(4));
} else {
    encodeLines();
}
enc.free();
