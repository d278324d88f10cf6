// Bundles the page into build/web/ (repo root): index.html plus
// assets/app-<contenthash>.js and .css, socket.io-client included, so nothing is
// loaded from anywhere but the chatd node that serves it.
//
//   node web/build.mjs [OUTDIR]        (npm run build, from web/)

import * as esbuild from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(process.argv[2] || path.join(here, '..', 'build', 'web'));

fs.rmSync(out, { recursive: true, force: true });
const result = await esbuild.build({
    entryPoints: [path.join(here, 'src', 'app.js')],
    bundle: true,
    format: 'esm',
    target: ['es2020'],
    minify: true,
    sourcemap: 'linked',
    outdir: path.join(out, 'assets'),
    entryNames: 'app-[hash]',
    assetNames: 'asset-[hash]',
    metafile: true,
    legalComments: 'linked',
    logLevel: 'warning',
});

let js, css;
for (const [file, info] of Object.entries(result.metafile.outputs)) {
    if (!info.entryPoint) continue;
    js = path.relative(out, path.resolve(file));
    if (info.cssBundle) css = path.relative(out, path.resolve(info.cssBundle));
}
if (!js || !css) throw new Error('build: no app bundle or stylesheet in the output');
const html = fs.readFileSync(path.join(here, 'src', 'index.html'), 'utf8')
    .replace('{{JS}}', js.split(path.sep).join('/'))
    .replace('{{CSS}}', css.split(path.sep).join('/'));
fs.writeFileSync(path.join(out, 'index.html'), html);
console.log(`build: ${path.relative(process.cwd(), out) || '.'}/index.html, ${js}, ${css}`);
