/**
 * Reloads the budgets YAML when it changes. A reload that fails (bad YAML, invalid object, a file
 * half written) keeps the last good budgets: `onError` reports it and the next change tries again.
 * So does a reload that finds no LLMProvider at all: far more often a file caught while being
 * rewritten than a wish to refuse every call.
 */
import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { loadBudgetFiles, type BudgetSet } from '../../common/budgets/load-budgets.ts';
import { BudgetValidationError } from '../../common/errors/errors.ts';

export interface BudgetsWatcher {
  close(): void;
}

export interface WatchBudgetsOptions {
  /** Quiet time after the last change before reloading (editors write in several steps). */
  debounceMs: number;
  onReload(budgets: BudgetSet): void;
  onError(error: unknown): void;
}

/**
 * Watches the folder (for a file: the folder holding it) rather than the file itself: editors
 * and Kubernetes ConfigMap updates replace files by renaming, which a watch on the old file
 * would never see. ConfigMap volumes swap a `..data` symlink, hence the `..` names.
 */
export async function watchBudgets(path: string, options: WatchBudgetsOptions): Promise<BudgetsWatcher> {
  const isDirectory = (await stat(path)).isDirectory();
  const folder = isDirectory ? path : dirname(path);
  const relevant = (name: string | null): boolean =>
    name === null || name.startsWith('..') || (isDirectory ? /\.ya?ml$/.test(name) : name === basename(path));

  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  let closed = false;

  const reload = () => {
    // One reload at a time, in the order the changes came.
    running = running.then(async () => {
      if (closed) return;
      try {
        const budgets = await loadBudgetFiles(path);
        if (budgets.providers.size === 0) {
          throw new BudgetValidationError(path, ['no LLMProvider found (an empty or half-written file?)']);
        }
        if (!closed) options.onReload(budgets);
      } catch (error) {
        if (!closed) options.onError(error);
      }
    });
  };

  const watcher: FSWatcher = watch(folder, { persistent: false }, (_event, name) => {
    if (!relevant(name === null ? null : String(name))) return;
    clearTimeout(timer);
    timer = setTimeout(reload, options.debounceMs);
  });
  watcher.on('error', (error) => options.onError(error));

  return {
    close() {
      closed = true;
      clearTimeout(timer);
      watcher.close();
    },
  };
}
