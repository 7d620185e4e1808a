/** quota-server's log: one JSON object per line on a stream (stderr), as log collectors expect. */
import type { Logger } from '../quota/server/logger.ts';

export function createJsonLogger(stream: NodeJS.WritableStream, component = 'quota-server'): Logger {
  const write = (level: string, message: string, fields?: Record<string, unknown>) => {
    stream.write(
      `${JSON.stringify({ time: new Date().toISOString(), level, component, msg: message, ...fields })}\n`,
    );
  };
  return {
    info: (message, fields) => write('info', message, fields),
    warn: (message, fields) => write('warn', message, fields),
    error: (message, fields) => write('error', message, fields),
  };
}
