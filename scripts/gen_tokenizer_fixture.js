#!/usr/bin/env node
// Generates tests/tokenizer_gpt2_ref.txt: GPT-2 token ids from the reference encoder, the MIT npm
// package gpt-3-encoder (install it outside the repo: cd /tmp/tokref && npm install gpt-3-encoder).
// Dev-only: `make test` reads the committed fixture and never needs node.
//
// usage: NODE_PATH=/tmp/tokref/node_modules node scripts/gen_tokenizer_fixture.js [DATA_DIR]
//
// Fixture lines (after '#' comments):
//   F <file under the data dir> <1-based line number> : <ids>   text = that line, without '\n'
//   H <the text's UTF-8 bytes in hex> : <ids>                    generated text, stored here
// Lines of shared data files are referenced, not copied. Generated lines are seeded random mixes
// of scripts, emoji, digits, whitespace, punctuation and contractions.
//
// First, it compares tokenizer.c's Unicode tables (\p{L}, \p{N}, and \s) with node's own regex
// classes over every code point and prints the differences (node follows a newer Unicode than
// Debian's UnicodeData.txt); generated text avoids those code points.
'use strict';
const fs = require('fs');
const path = require('path');
const { encode } = require('gpt-3-encoder');

const root = path.join(__dirname, '..');
const dataDir = process.argv[2] || path.join(root, '..', 'shared', 'data');
const outPath = path.join(root, 'tests', 'tokenizer_gpt2_ref.txt');

// --- tokenizer.c's classes, parsed from its generated block
const src = fs.readFileSync(path.join(root, 'tokenizer.c'), 'utf8');
function ranges(name) {
  const start = src.indexOf('unicode_' + name + '_ranges[');
  const body = src.slice(start, src.indexOf('};', start));
  return Array.from(body.matchAll(/\{0x([0-9A-F]+),0x([0-9A-F]+)\}/g)).map(x => [parseInt(x[1], 16), parseInt(x[2], 16)]);
}
const cls = new Uint8Array(0x110000);  // 0 other, 1 letter, 2 number, 3 space (as tokenizer.c)
for (const [lo, hi] of ranges('number')) for (let c = lo; c <= hi; c++) cls[c] = 2;
for (const [lo, hi] of ranges('letter')) for (let c = lo; c <= hi; c++) cls[c] = 1;
for (const [lo, hi] of ranges('space')) for (let c = lo; c <= hi; c++) cls[c] = 3;
for (const c of [9, 10, 11, 12, 13, 0x2028, 0x2029, 0xFEFF]) cls[c] = 3;
const differs = new Uint8Array(0x110000);
let numDiffer = 0;
const examples = [];
for (let c = 0; c < 0x110000; c++) {
  if (c >= 0xD800 && c <= 0xDFFF) continue;
  const ch = String.fromCodePoint(c);
  const node = /\s/u.test(ch) ? 3 : /\p{L}/u.test(ch) ? 1 : /\p{N}/u.test(ch) ? 2 : 0;
  if (node !== cls[c]) { differs[c] = 1; numDiffer++; if (examples.length < 8) examples.push('U+' + c.toString(16).toUpperCase()); }
}
console.log(`node Unicode ${process.versions.unicode}: ${numDiffer} code points class differently from tokenizer.c's tables (e.g. ${examples.join(' ')}); generated text avoids them`);

// --- seeded random (mulberry32)
let seed = 20240611;
function rand() {
  seed = (seed + 0x6D2B79F5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const below = n => Math.floor(rand() * n);
const pick = a => a[below(a.length)];
function cp(lo, hi) {  // a random code point in [lo, hi] that both Unicode versions class alike
  for (;;) { const c = lo + below(hi - lo + 1); if (!(c >= 0xD800 && c <= 0xDFFF) && !differs[c]) return String.fromCodePoint(c); }
}
const run = (f, n) => { let s = ''; for (let i = 0; i < n; i++) s += f(); return s; };

const words = ['the', 'of', 'and', 'to', 'in', 'is', 'you', 'that', 'it', 'he', 'was', 'for', 'on', 'are', 'as',
  'with', 'his', 'they', 'at', 'be', 'this', 'have', 'from', 'or', 'one', 'had', 'by', 'word', 'but', 'not',
  'what', 'all', 'were', 'we', 'when', 'your', 'can', 'said', 'there', 'use', 'an', 'each', 'which', 'she',
  'do', 'how', 'their', 'if', 'will', 'up', 'other', 'about', 'out', 'many', 'then', 'them', 'these', 'so',
  'GFlowNet', 'tokenizer', 'HTTPServer', 'naïve', 'café', 'über', 'Straße', 'façade', 'jalapeño', 'Ωmega'];
const spaces = [' ', '  ', '\t', '\n', '\r\n', '\u00A0', '\u3000', '\u2028', '\u2029', '\uFEFF', '\u1680', '\u2003',
  '\u202F', '\u205F', '\u000B', '\u000C', '\u0085', '\u200B', '\u180E'];
const contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D", "'Re", "'lL", "''s", "'"];
const punct = '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~';
const symbols = ['€', '£', '¥', '∑', '→', '©', '®', '°', '±', '×', '÷', '…', '—', '–', '“', '”', '‘', '’', '«', '»', '•', '¶', '§',
  '","', '",,"', '"},{"', ',,,,', '),', '.,', "',", '"\',', '<|endoftext|>', '<|', '|>', '\u0000', '\u0001', '\u007F', '\uFFFD'];
const numberish = () => pick([
  () => run(() => cp(0x30, 0x39), 1 + below(30)),
  () => run(() => cp(0x660, 0x669), 1 + below(6)),     // Arabic-Indic digits
  () => run(() => cp(0xFF10, 0xFF19), 1 + below(6)),   // fullwidth digits
  () => pick(['²', '³', '¹', '½', '¾', '⅓', 'Ⅻ', 'ⅷ', '①', '⑳', '𝟘', '𒐫']),
  () => (below(1000) / 10).toString(), () => '3.14159', () => '1,000,000', () => '2024-06-11',
])();
const script = () => pick([
  () => run(() => cp(0x61, 0x7A), 1 + below(12)), () => run(() => cp(0x41, 0x5A), 1 + below(6)),
  () => run(() => cp(0xC0, 0x24F), 1 + below(6)),      // accented Latin
  () => 'e\u0301' + 'n\u0303' + 'a\u0308',             // combining marks (Mn: not letters)
  () => run(() => cp(0x391, 0x3C9), 1 + below(8)),     // Greek
  () => run(() => cp(0x410, 0x44F), 1 + below(8)),     // Cyrillic
  () => run(() => cp(0x5D0, 0x5EA), 1 + below(6)),     // Hebrew
  () => run(() => cp(0x627, 0x64A), 1 + below(6)),     // Arabic
  () => run(() => cp(0x905, 0x939), 1 + below(5)) + '\u094D\u093E',  // Devanagari + signs
  () => run(() => cp(0xE01, 0xE2E), 1 + below(6)),     // Thai
  () => run(() => cp(0x4E00, 0x9FFF), 1 + below(8)),   // CJK
  () => run(() => cp(0x3041, 0x30FF), 1 + below(8)),   // kana
  () => run(() => cp(0xAC00, 0xD7A3), 1 + below(6)),   // Hangul
  () => run(() => cp(0x20000, 0x2A6DF), 1 + below(3)), // CJK extension B (astral)
  () => run(() => cp(0x1D400, 0x1D7FF), 1 + below(4)), // mathematical alphanumerics
])();
const emoji = () => pick([
  () => run(() => cp(0x1F300, 0x1F64F), 1 + below(4)), () => run(() => cp(0x1F900, 0x1F9FF), 1 + below(3)),
  () => '👍🏽', () => '👨‍👩‍👧‍👦', () => '🇫🇷🇯🇵', () => '❤️', () => '☃', () => '✔︎', () => cp(0x2600, 0x27BF),
])();
const anyChar = () => cp(0, 0x10FFFF);                 // anywhere, assigned or not
const piece = () => pick([
  () => pick(words), () => pick(words), () => pick(words).toUpperCase(), () => pick(words) + pick(contractions),
  () => pick(contractions), () => pick(spaces), () => run(() => ' ', 1 + below(25)), () => run(() => pick(spaces), 1 + below(5)),
  () => run(() => punct[below(punct.length)], 1 + below(5)), () => pick(symbols), numberish, numberish,
  script, script, script, emoji, emoji, anyChar, () => run(anyChar, 1 + below(4)),
])();
function generatedLine() {
  const n = 1 + below(10);
  let s = '';
  for (let i = 0; i < n; i++) {
    const p = piece();
    s += (typeof p === 'function' ? p() : p) + (rand() < 0.6 ? ' ' : '');
  }
  if (rand() < 0.3) s = s.trim();
  if (rand() < 0.1) s = ' ' + s;
  return s.length > 100 ? s.slice(0, 100).replace(/[\uD800-\uDBFF]$/, '') : s;
}

// --- fixture
const out = ['# GPT-2 ids from npm gpt-3-encoder ' + require('gpt-3-encoder/package.json').version +
  ' (MIT). Generated by scripts/gen_tokenizer_fixture.js; do not edit.',
  '# F <file in the data dir> <line number, from 1> : ids      H <text as UTF-8 hex> : ids'];
const sources = [
  ['openwebtext/prompts.txt', 1800], ['corpora/brown.txt', 1600], ['corpora/tinyshakespeare.txt', 1200],
  ['stories/storycloze_val_5sent.txt', 600], ['stories/tinystories_excerpt.txt', 800], ['subj/train.jsonl', 600],
  ['stories/roc_valid.json', 200],
];
let fileLines = 0, genLines = 0;
for (const [name, want] of sources) {
  const bytes = fs.readFileSync(path.join(dataDir, name));
  const lines = bytes.toString('utf8').split('\n');
  const raw = []; // byte lengths must agree (no invalid UTF-8 turned into U+FFFD)
  const chosen = new Set();
  let tries = 0;
  while (chosen.size < Math.min(want, lines.length) && tries++ < 50 * want) {
    const i = below(lines.length);
    const line = lines[i];
    if (chosen.has(i) || Buffer.byteLength(line) > 160) continue;
    chosen.add(i);
  }
  for (const i of Array.from(chosen).sort((a, b) => a - b)) {
    out.push(`F ${name} ${i + 1} : ${encode(lines[i]).join(' ')}`);
    fileLines++;
  }
  if (raw.length) throw new Error('unreachable');
  if (Buffer.compare(Buffer.from(lines.join('\n'), 'utf8'), bytes) !== 0) throw new Error(name + ' is not valid UTF-8');
}
const fixed = ['', ' ', '  ', '\t', '\r\n', '<|endoftext|>', 'a<|endoftext|>b', "I'm don't we'll they've she'd it's you're",
  "I'M DON'T WE'LL", '   leading and trailing   ', 'x' + ' '.repeat(200) + 'y', '9'.repeat(300), 'é'.repeat(100)];
for (const s of fixed) { out.push(`H ${Buffer.from(s, 'utf8').toString('hex')} : ${encode(s).join(' ')}`); genLines++; }
while (genLines < 4200) {
  const s = generatedLine();
  out.push(`H ${Buffer.from(s, 'utf8').toString('hex')} : ${encode(s).join(' ')}`);
  genLines++;
}
fs.writeFileSync(outPath, out.join('\n') + '\n');
console.log(`${outPath}: ${fileLines} data-file lines + ${genLines} generated lines, ${fs.statSync(outPath).size} bytes`);
