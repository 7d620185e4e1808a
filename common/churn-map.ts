/**
 * A Map for entries that live moments (calls in flight) in a structure that lives for the
 * process: one entry set and deleted per call, thousands of times a second.
 *
 * Why not a plain Map: V8 keeps a Map's entries in a table it reallocates every few dozen
 * set/delete pairs (deleted entries use up its slots), and allocates the new table in the old
 * generation once the current one is there. A Map made at start-up has an old table within a
 * second or two, so from then on its churn is old-generation garbage: measured in the quota
 * service at 5 000 acquire+settle pairs/s, such Maps and Sets made 2 MB/s of it, and a full
 * collection (5 to 20 ms pauses) every few seconds. Here the Map is remade after every
 * REMAKE_AFTER deletes: the new one's table is young, and under churn each table it moves to is
 * replaced within milliseconds, so none lives to be promoted and all die in the young generation.
 *
 * Deleting while iterating is safe, as with a Map; an entry added while iterating may be missed
 * (the iteration goes on over the Map it started on), where a Map would visit it.
 */
const REMAKE_AFTER = 1024;

export class ChurnMap<K, V> {
  #map = new Map<K, V>();
  #deletes = 0;

  get size(): number {
    return this.#map.size;
  }

  get(key: K): V | undefined {
    return this.#map.get(key);
  }

  has(key: K): boolean {
    return this.#map.has(key);
  }

  set(key: K, value: V): this {
    this.#map.set(key, value);
    return this;
  }

  delete(key: K): boolean {
    const deleted = this.#map.delete(key);
    if (deleted && ++this.#deletes >= REMAKE_AFTER) {
      this.#deletes = 0;
      this.#map = new Map(this.#map);
    }
    return deleted;
  }

  clear(): void {
    this.#map.clear();
  }

  keys(): MapIterator<K> {
    return this.#map.keys();
  }

  values(): MapIterator<V> {
    return this.#map.values();
  }

  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.#map[Symbol.iterator]();
  }
}

/** A Set for members that live moments, for the reason ChurnMap gives. */
export class ChurnSet<T> {
  readonly #members = new ChurnMap<T, true>();

  get size(): number {
    return this.#members.size;
  }

  has(member: T): boolean {
    return this.#members.has(member);
  }

  add(member: T): this {
    this.#members.set(member, true);
    return this;
  }

  delete(member: T): boolean {
    return this.#members.delete(member);
  }

  [Symbol.iterator](): MapIterator<T> {
    return this.#members.keys();
  }
}
