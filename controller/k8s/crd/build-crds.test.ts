import { describe, expect, it } from 'vitest';
import { parseObject } from '../../../common/budgets/load-budgets.ts';
import { INVALID_CASES, VALID_OBJECTS, type Obj } from '../../../test/kube/crd-examples.ts';
import { buildCrds, toStructural } from './build-crds.ts';

type Schema = Record<string, unknown>;

/**
 * The OpenAPI part of what the API server checks (types, enums, bounds, patterns, required,
 * pruning of unknown fields); CEL rules are checked on the real API server (test/kube).
 * Returns the paths that fail.
 */
function openApiErrors(schema: Schema, value: unknown, path: string): string[] {
  if (schema['x-kubernetes-int-or-string']) {
    return typeof value === 'string' || Number.isInteger(value) ? [] : [`${path}: int-or-string`];
  }
  const errors: string[] = [];
  const fail = (why: string) => errors.push(`${path}: ${why}`);
  switch (schema.type) {
    case 'object': {
      if (typeof value !== 'object' || value === null || Array.isArray(value))
        return [`${path}: not an object`];
      const record = value as Record<string, unknown>;
      for (const name of (schema.required as string[] | undefined) ?? [])
        if (!(name in record)) fail(`${name} required`);
      const properties = schema.properties as Record<string, Schema> | undefined;
      for (const [name, child] of Object.entries(record)) {
        const childSchema = properties?.[name] ?? (schema.additionalProperties as Schema | undefined);
        if (!childSchema) {
          if (properties) fail(`${name} would be pruned`);
          continue;
        }
        errors.push(...openApiErrors(childSchema, child, `${path}.${name}`));
      }
      return errors;
    }
    case 'array':
      if (!Array.isArray(value)) return [`${path}: not an array`];
      if (typeof schema.maxItems === 'number' && value.length > schema.maxItems) fail('too many items');
      value.forEach((item, i) =>
        errors.push(...openApiErrors(schema.items as Schema, item, `${path}[${i}]`)),
      );
      return errors;
    case 'string':
      if (typeof value !== 'string') return [`${path}: not a string`];
      if (typeof schema.maxLength === 'number' && value.length > schema.maxLength) fail('too long');
      if (typeof schema.minLength === 'number' && value.length < schema.minLength) fail('too short');
      if (typeof schema.pattern === 'string' && !new RegExp(schema.pattern).test(value)) fail('pattern');
      break;
    case 'integer':
    case 'number': {
      if (typeof value !== 'number' || (schema.type === 'integer' && !Number.isInteger(value)))
        return [`${path}: not a ${schema.type}`];
      const min = schema.minimum as number | undefined;
      if (min !== undefined && (schema.exclusiveMinimum ? value <= min : value < min)) fail('below minimum');
      if (typeof schema.maximum === 'number' && value > schema.maximum) fail('above maximum');
      break;
    }
    default:
      fail(`unexpected schema type ${String(schema.type)}`);
  }
  if (Array.isArray(schema.enum) && !schema.enum.includes(value)) fail('not in enum');
  return errors;
}

const crds = buildCrds();
function rootSchema(kind: string): Schema {
  const crd = crds.find((c) => (c.spec as { names: { kind: string } }).names.kind === kind) as {
    spec: { versions: Array<{ schema: { openAPIV3Schema: Schema } }> };
  };
  return crd.spec.versions[0]!.schema.openAPIV3Schema;
}

describe('generated CRDs', () => {
  it('accept every example object, as zod does, without pruning a field', () => {
    for (const object of VALID_OBJECTS) {
      expect(() => parseObject(object, 'example')).not.toThrow();
      const { metadata: _metadata, ...rest } = object as Obj;
      expect(openApiErrors(rootSchema(String(object.kind)), { ...rest, metadata: {} }, '')).toEqual([]);
    }
  });

  it('every invalid example is refused by zod too, so the CRD and the engine agree', () => {
    for (const { what, object } of INVALID_CASES) {
      expect(() => parseObject(object, what), what).toThrow();
    }
  });

  it('is a structural schema: no unions but int-or-string, no closed objects, every node typed', () => {
    const visit = (node: Schema, path: string): void => {
      expect(node.additionalProperties, path).not.toBe(false);
      if (node['x-kubernetes-int-or-string'])
        expect(node.anyOf).toEqual([{ type: 'integer' }, { type: 'string' }]);
      else expect([node.type, node.anyOf], path).toEqual([expect.any(String), undefined]);
      for (const [name, child] of Object.entries((node.properties as Record<string, Schema>) ?? {}))
        visit(child, `${path}.${name}`);
      if (node.items) visit(node.items as Schema, `${path}[*]`);
      if (typeof node.additionalProperties === 'object')
        visit(node.additionalProperties as Schema, `${path}{*}`);
    };
    visit(rootSchema('LLMProvider'), '');
    visit(rootSchema('LLMBudget'), '');
  });

  it('turns duration metadata into a bounded CEL rule and refuses unions it cannot express', () => {
    const node = toStructural(
      { type: 'string', 'x-tokenlease-duration': { minMs: 1000, maxMs: 2000 } },
      'x',
      {},
    );
    expect(node.maxLength).toBe(32);
    expect(JSON.stringify(node['x-kubernetes-validations'])).toContain("duration('2000ms')");
    expect(() => toStructural({ anyOf: [{ type: 'string' }, { type: 'boolean' }] }, 'x', {})).toThrow(
      /int-or-string/,
    );
    expect(() => toStructural({ $ref: '#/x' }, 'x', {})).toThrow(/\$ref/);
  });
});
