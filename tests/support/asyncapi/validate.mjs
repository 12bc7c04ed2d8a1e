// Parses each AsyncAPI document given with the AsyncAPI project's parser; exits 1 on any error.
import { Parser, fromFile, DiagnosticSeverity } from '@asyncapi/parser';
import path from 'node:path';

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node validate.mjs FILE...');
  process.exit(2);
}
const parser = new Parser();
let failed = 0;
for (const file of files) {
  const { document, diagnostics } = await fromFile(parser, path.resolve(file)).parse();
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
  for (const d of diagnostics) {
    if (d.severity <= DiagnosticSeverity.Warning) {
      const level = d.severity === DiagnosticSeverity.Error ? 'error' : 'warning';
      console.log(`${file}: ${level} ${d.code} at ${d.path.join('.')}: ${d.message}`);
    }
  }
  if (errors.length > 0 || document === undefined) {
    failed += 1;
  } else {
    console.log(`${file}: valid AsyncAPI ${document.version()}, ${document.channels().length} channels`);
  }
}
process.exit(failed === 0 ? 0 : 1);
