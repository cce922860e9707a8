// passkit-generator (node-forge signing) making the same storeCard as tillpass's bench, from
// the model and chain that `cargo bench --bench passes` wrote. Usage: node bench.mjs DIR [N]
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { PKPass } from "passkit-generator";

const dir = process.argv[2];
const passes = Number(process.argv[3] ?? 300);
const modelDir = join(dir, "model");

function files(root, at = root, out = {}) {
  for (const name of readdirSync(at)) {
    const path = join(at, name);
    if (statSync(path).isDirectory()) files(root, path, out);
    else out[relative(root, path)] = readFileSync(path);
  }
  return out;
}

const model = files(modelDir);
const certificates = {
  wwdr: readFileSync(join(dir, "wwdr.pem")),
  signerCert: readFileSync(join(dir, "pass.pem")),
  signerKey: readFileSync(join(dir, "pass.key")),
};
const base = JSON.parse(model["pass.json"].toString("utf8"));

function build(i) {
  const buffers = { ...model };
  const json = { ...base, serialNumber: `member-${i}` };
  json.storeCard.headerFields[0].value = (i * 137) % 6000;
  buffers["pass.json"] = Buffer.from(JSON.stringify(json));
  const pass = new PKPass(buffers, certificates);
  return pass.getAsBuffer();
}

for (let i = 0; i < 20; i++) build(i);
const times = [];
let bytes = 0;
const start = process.hrtime.bigint();
for (let i = 0; i < passes; i++) {
  const t = process.hrtime.bigint();
  bytes += build(i).length;
  times.push(Number(process.hrtime.bigint() - t) / 1e6);
}
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
times.sort((a, b) => a - b);
console.log(
  `passkit-generator: ${passes} signed passes in ${seconds.toFixed(2)} s: ${(passes / seconds).toFixed(0)} passes/s ` +
    `(p50 ${times[Math.floor(passes / 2)].toFixed(2)} ms, p99 ${times[Math.floor((passes * 99) / 100)].toFixed(2)} ms, ${Math.round(bytes / passes)} bytes each)`,
);
