import { describe, expect, it } from 'vitest';
import { COMMANDS } from './commands.ts';

describe('tokenlease command registry', () => {
  it('registers quota-server', () => {
    expect(Object.keys(COMMANDS)).toContain('quota-server');
  });

  for (const [name, command] of Object.entries(COMMANDS)) {
    it(`${name}: has a one-line description and loads a module exporting run()`, async () => {
      expect(name).toMatch(/^[a-z][a-z-]*$/);
      expect(command.description).toMatch(/^[^\n]{10,100}$/);
      const module = await command.load();
      expect(typeof module.run).toBe('function');
    });
  }
});
