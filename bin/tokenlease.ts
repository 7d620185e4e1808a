#!/usr/bin/env node
/**
 * The `tokenlease` CLI: `tokenlease <command> [flags]`, commands registered in ./commands.ts.
 * Exit codes: 0 done, 1 failed, 2 bad usage or configuration (the message names the field).
 */
import { ConfigError } from '../common/errors/errors.ts';
import { COMMANDS } from './commands.ts';

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  return `Usage: tokenlease <command> [flags]

Commands:
${Object.entries(COMMANDS)
  .map(([name, command]) => `  ${name.padEnd(width)}  ${command.description}`)
  .join('\n')}

Run \`tokenlease <command> --help\` for a command's flags.
`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' ? rest[0] : undefined;
    if (topic === undefined) {
      process.stdout.write(usage());
      return name === undefined ? 2 : 0;
    }
    return main([topic, '--help']);
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    process.stderr.write(`tokenlease: unknown command ${JSON.stringify(name)}\n\n${usage()}`);
    return 2;
  }
  try {
    return await (await command.load()).run(rest, process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`tokenlease ${name}: ${error.message}\n`);
      return 2;
    }
    process.stderr.write(
      `tokenlease ${name}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
