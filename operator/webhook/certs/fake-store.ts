/**
 * An in-memory CertBackend for unit tests of the rotator: one Secret with a
 * resourceVersion that every write bumps (a stale write fails with 409, like
 * the API server's), and one webhook configuration's caBundle (or none).
 */
import type { CertBackend, SecretData, StoredSecret } from './store.ts';

export class FakeCertStore implements CertBackend {
  readonly configurationName = 'castellan-webhook';
  secret: StoredSecret | undefined;
  /** The caBundle of the webhook configuration; undefined: the configuration does not exist. */
  bundle: string | undefined = '';
  writes = 0;
  private version = 0;

  read(): Promise<StoredSecret | undefined> {
    return Promise.resolve(this.secret === undefined ? undefined : { data: { ...this.secret.data }, resourceVersion: this.secret.resourceVersion });
  }

  write(data: SecretData, previous: StoredSecret | undefined): Promise<void> {
    if (previous?.resourceVersion !== this.secret?.resourceVersion) return Promise.reject(Object.assign(new Error('conflict'), { code: 409 }));
    this.version++;
    this.writes++;
    const kept = Object.fromEntries(Object.entries(data).filter(([, v]) => v !== undefined)) as SecretData;
    this.secret = { data: { ...(this.secret?.data ?? {}), ...kept }, resourceVersion: String(this.version) };
    return Promise.resolve();
  }

  published(): Promise<{ bundle: string; consistent: boolean } | undefined> {
    return Promise.resolve(this.bundle === undefined ? undefined : { bundle: this.bundle, consistent: true });
  }

  publish(bundle: string): Promise<'updated' | 'unchanged' | 'absent'> {
    if (this.bundle === undefined) return Promise.resolve('absent');
    if (this.bundle === bundle) return Promise.resolve('unchanged');
    this.bundle = bundle;
    return Promise.resolve('updated');
  }
}
