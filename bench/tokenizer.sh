#!/usr/bin/env bash
# Throughput of the o200k_base token counter (lib/vmx_tokenizer) against
# tiktoken's own encoder (the WASM build of its Rust core, from the pinned
# npm package), on the same corpora in the same run:
#   bench/tokenizer.sh                (TOKENIZER_BENCH_SECONDS=3 per corpus and side)
# Corpora, made in a temporary directory: English prose (the repository's
# Markdown), C code (lib/*.c), CJK prose (Chinese and Japanese sentences, runs
# of letters without spaces: long pieces), multilingual text with emoji, and a
# base64 blob (longer pieces).  Token counts of both sides must agree.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${TOKENIZER_BENCH_SECONDS:-3}
ranks=build/o200k_base.tiktoken
tool=build/tools/vmx-tokenize

if [ ! -s $ranks ] || [ ! -d tools/tokenizer/node_modules ]; then
    ./build.sh build
fi
make -s tools

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT INT TERM

cat README.md docs/*.md > "$dir/prose.md"
cat lib/*.c > "$dir/code.c"
python3 - "$dir" <<'PY'
import base64, random, sys
d = sys.argv[1]
rng = random.Random(1)
parts = ["我们今天去公园散步，天气非常好。", "東京は日本の首都です。", "안녕하세요. 오늘 날씨가 좋네요!",
         "مرحبا بالعالم! هذه جملة عربية.", "नमस्ते दुनिया। यह हिंदी है।", "Привет, мир!",
         "Tiếng Việt có dấu.", "👨‍👩‍👧‍👦 👍🏽 🏳️‍🌈", "It's a test, isn't it? 12345"]
open(f"{d}/multilingual.txt", "w").write(" ".join(rng.choice(parts) for _ in range(40000)))
cjk = ["我们今天去公园散步，天气非常好。", "人工智能正在改变世界的每一个角落。", "他说：“明天见！”",
       "東京は日本の首都です。", "ひらがなとカタカナ、そして漢字を使います。", "研究者たちは新しい方法を提案した。",
       "这个问题需要仔细考虑，然后再做决定。", "日本語の文章には空白がありません。"]
open(f"{d}/cjk.txt", "w").write("".join(rng.choice(cjk) for _ in range(30000)))
open(f"{d}/base64.txt", "w").write(base64.b64encode(rng.randbytes(600000)).decode())
PY

files=("$dir/prose.md" "$dir/code.c" "$dir/cjk.txt" "$dir/multilingual.txt" "$dir/base64.txt")
ours=$("$tool" $ranks --bench "$seconds" "${files[@]}")
theirs=$(node tools/tokenizer/reference.mjs --bench "$seconds" "${files[@]}")

printf '%-18s %10s %9s %12s %14s %7s\n' corpus bytes tokens "vmx MB/s" "tiktoken MB/s" ratio
paste -d' ' <(echo "$ours") <(echo "$theirs") | while read -r f bytes tokens mbs _ _ rtokens rmbs; do
    if [ "$tokens" != "$rtokens" ]; then
        echo "token counts differ on $(basename "$f"): $tokens vs $rtokens" >&2
        exit 1
    fi
    awk -v f="$(basename "$f")" -v b="$bytes" -v t="$tokens" -v m="$mbs" -v r="$rmbs" \
        'BEGIN { printf "%-18s %10s %9s %12s %14s %6.1fx\n", f, b, t, m, r, m / r }'
done
