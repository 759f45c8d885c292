/**
 * The owner's side of `DELETE /v1/classes/{class}/objects/{id}`: run by the
 * object host as a turn of the object (host.ts, path DELETE_PATH), so it is
 * ordered with the app's requests and uses the activation's fencing token
 * like any storage write. Deletes every key (with the index summary riding in
 * those batches), cancels the alarm, then removes the index entry; a host
 * killed in between leaves an entry with no keys and no alarm, which listings
 * skip and remove (service.ts).
 */
import type { ActiveObject } from '../objects/host.ts';
import type { ClassNames } from '../objects/subjects.ts';
import type { Storage } from '../storage/storage.ts';
import { indexNames, OP_HEADER, TOMBSTONE_TTL } from './layout.ts';

export function ownerDelete(storage: Storage, cls: string, names: ClassNames): (obj: ActiveObject) => Promise<{ status: number }> {
  const idx = indexNames(names);
  return async (obj) => {
    // Runs as a turn of the object (ObjectHost.handleInternally), so the storage calls pass its turn gate.
    const ref = { cls, id: obj.id };
    await storage.deleteAll(ref);
    await storage.deleteAlarm(ref);
    await storage.state(ref).raw({ subject: idx.subject(obj.encId), data: new Uint8Array(0), headers: { [OP_HEADER]: 'del', 'Nats-TTL': TOMBSTONE_TTL } });
    return { status: 204 };
  };
}
