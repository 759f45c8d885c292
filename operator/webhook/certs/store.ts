/**
 * Where the webhook's certificates live (thin Kubernetes adapter, does I/O):
 * one Secret in the operator's namespace (`ca.crt` the trusted CA bundle,
 * `ca.key` the newest CA's key, `tls.crt`/`tls.key` the serving pair; with
 * cert-manager its own Secret with the same `tls.*` names), and the `caBundle`
 * of every webhook in the MutatingWebhookConfiguration. Writes use the
 * objects' resourceVersion, so two writers can never overwrite each other
 * unseen (the loser gets 409 and re-reads on its next tick).
 */
import * as k8s from '@kubernetes/client-node';
import { statusOf } from '../../controller/kube.ts';
import { managedBy } from '../../desired/common.ts';

export interface SecretData {
  'ca.crt'?: string;
  'ca.key'?: string;
  'tls.crt'?: string;
  'tls.key'?: string;
}

export interface StoredSecret {
  data: SecretData;
  resourceVersion: string | undefined;
}

const decode = (v: string | undefined): string | undefined => (v === undefined ? undefined : Buffer.from(v, 'base64').toString('utf8'));
const encode = (v: string | undefined): string | undefined => (v === undefined ? undefined : Buffer.from(v, 'utf8').toString('base64'));

/** What the rotator needs from where certificates live (the real one below; an in-memory fake beside it for unit tests). */
export interface CertBackend {
  readonly configurationName: string;
  read(): Promise<StoredSecret | undefined>;
  write(data: SecretData, previous: StoredSecret | undefined): Promise<void>;
  published(): Promise<{ bundle: string; consistent: boolean } | undefined>;
  publish(bundle: string): Promise<'updated' | 'unchanged' | 'absent'>;
}

export class CertStore implements CertBackend {
  private readonly core: k8s.CoreV1Api;
  private readonly admission: k8s.AdmissionregistrationV1Api;
  readonly namespace: string;
  readonly secretName: string;
  readonly configurationName: string;

  constructor(kc: k8s.KubeConfig, opts: { namespace: string; secretName: string; configurationName: string }) {
    this.core = kc.makeApiClient(k8s.CoreV1Api);
    this.admission = kc.makeApiClient(k8s.AdmissionregistrationV1Api);
    this.namespace = opts.namespace;
    this.secretName = opts.secretName;
    this.configurationName = opts.configurationName;
  }

  /** The Secret's certificate data; undefined when the Secret does not exist. */
  async read(): Promise<StoredSecret | undefined> {
    try {
      const s = await this.core.readNamespacedSecret({ name: this.secretName, namespace: this.namespace });
      const d = s.data ?? {};
      return {
        data: { 'ca.crt': decode(d['ca.crt']), 'ca.key': decode(d['ca.key']), 'tls.crt': decode(d['tls.crt']), 'tls.key': decode(d['tls.key']) },
        resourceVersion: s.metadata?.resourceVersion,
      };
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw err;
    }
  }

  /** Creates the Secret, or replaces its data if `previous` says it exists (conflict → 409 error). */
  async write(data: SecretData, previous: StoredSecret | undefined): Promise<void> {
    const encoded = Object.fromEntries(Object.entries(data).map(([k, v]) => [k, encode(v)]).filter(([, v]) => v !== undefined)) as Record<string, string>;
    if (previous === undefined) {
      await this.core.createNamespacedSecret({
        namespace: this.namespace,
        body: {
          apiVersion: 'v1',
          kind: 'Secret',
          type: 'Opaque',
          metadata: { name: this.secretName, namespace: this.namespace, labels: { 'app.kubernetes.io/part-of': 'castellan', 'app.kubernetes.io/managed-by': managedBy } },
          data: encoded,
        },
      });
      return;
    }
    const current = await this.core.readNamespacedSecret({ name: this.secretName, namespace: this.namespace });
    if (current.metadata?.resourceVersion !== previous.resourceVersion) {
      throw Object.assign(new Error(`Secret ${this.namespace}/${this.secretName} changed since it was read`), { code: 409 });
    }
    await this.core.replaceNamespacedSecret({ name: this.secretName, namespace: this.namespace, body: { ...current, data: { ...(current.data ?? {}), ...encoded } } });
  }

  /**
   * The CA bundle every webhook of the configuration trusts (PEM), or
   * undefined when the configuration does not exist. When the webhooks
   * disagree, the first one's (the others are fixed by `publish`).
   */
  async published(): Promise<{ bundle: string; consistent: boolean } | undefined> {
    const mwc = await this.readConfiguration();
    if (mwc === undefined) return undefined;
    const bundles = (mwc.webhooks ?? []).map((w) => w.clientConfig.caBundle ?? '');
    return { bundle: decode(bundles[0] ?? '') ?? '', consistent: bundles.every((b) => b === bundles[0]) };
  }

  /** Sets every webhook's caBundle; 'absent' when the configuration does not exist (nothing is created). */
  async publish(bundle: string): Promise<'updated' | 'unchanged' | 'absent'> {
    const mwc = await this.readConfiguration();
    if (mwc === undefined) return 'absent';
    const want = encode(bundle) as string;
    const webhooks = mwc.webhooks ?? [];
    if (webhooks.every((w) => w.clientConfig.caBundle === want)) return 'unchanged';
    for (const w of webhooks) w.clientConfig.caBundle = want;
    await this.admission.replaceMutatingWebhookConfiguration({ name: this.configurationName, body: mwc });
    return 'updated';
  }

  private async readConfiguration(): Promise<k8s.V1MutatingWebhookConfiguration | undefined> {
    try {
      return await this.admission.readMutatingWebhookConfiguration({ name: this.configurationName });
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw err;
    }
  }
}
