// Bundles the playground into dist/, which the gateway embeds (gateway/build.rs):
//   dist/index.html                 the page, naming the bundle's files
//   dist/favicon.svg
//   dist/assets/app-HASH.js         main.js with CodeMirror, minified
//   dist/assets/style-HASH.css
// HASH is of the file's bytes (esbuild's own [hash] also covers paths,
// which differ between clones and caches), so the same page gets the same
// names wherever it is built.
// and beside each text file its gzip, when that is smaller. Written to
// dist.tmp/ and renamed, so the gateway never embeds half a bundle.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { constants, gzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';

const here = fileURLToPath(new URL('.', import.meta.url));
const tmp = join(here, 'dist.tmp');
const dist = join(here, 'dist');

rmSync(tmp, { recursive: true, force: true });
mkdirSync(join(tmp, 'assets'), { recursive: true });

const result = await build({
  absWorkingDir: here,
  entryPoints: { app: 'src/main.js', style: 'src/style.css' },
  outdir: join(tmp, 'assets'),
  entryNames: '[name]',
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['chrome111', 'firefox115', 'safari16.4'],
  legalComments: 'eof',
  metafile: true,
  logLevel: 'warning',
});

const outputs = {};
for (const [file, meta] of Object.entries(result.metafile.outputs)) {
  const name = { 'src/main.js': 'app', 'src/style.css': 'style' }[meta.entryPoint];
  if (!name) throw new Error(`an output esbuild was not asked for: ${file}`);
  const body = readFileSync(join(here, file));
  const hash = createHash('sha256').update(body).digest('hex').slice(0, 12);
  const named = file.replace(/([^/]+)(\.[a-z]+)$/, `$1-${hash}$2`);
  renameSync(join(here, file), join(here, named));
  outputs[name] = named;
}
if (!outputs.app || !outputs.style) throw new Error(`esbuild did not name its outputs: ${JSON.stringify(outputs)}`);
const url = (file) => '/' + relative(tmp, join(here, file));

const page = readFileSync(join(here, 'src/index.html'), 'utf8')
  .replace('%APP%', url(outputs.app))
  .replace('%STYLE%', url(outputs.style));
if (page.includes('%')) throw new Error('src/index.html has a placeholder left');
writeFileSync(join(tmp, 'index.html'), page);
copyFileSync(join(here, 'src/favicon.svg'), join(tmp, 'favicon.svg'));

let total = 0;
let gzipped = 0;
for (const file of walk(tmp)) {
  const body = readFileSync(file);
  total += body.length;
  if (!/\.(html|js|css|svg|json|txt)$/.test(file)) continue;
  const gz = gzipSync(body, { level: constants.Z_BEST_COMPRESSION });
  if (gz.length < body.length * 0.9) {
    writeFileSync(file + '.gz', gz);
    gzipped += gz.length;
  } else {
    gzipped += body.length;
  }
}

rmSync(dist, { recursive: true, force: true });
renameSync(tmp, dist);
console.log(`web: ${url(outputs.app)} ${url(outputs.style)}: ${kib(total)} KiB, ${kib(gzipped)} KiB gzipped`);

function* walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* walk(path);
    else yield path;
  }
}

function kib(n) {
  return (n / 1024).toFixed(0);
}
