/**
 * Test harness for object storage: an object host whose app knows its
 * sidecar (PORT and CASTELLAN_SIDECAR_URL, as `castellan dev` and the
 * operator give them): the storage test app (storage-app.ts) or
 * examples/counter/app.js, plus its sidecar, as real processes.
 */
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { spawnOwned } from '../../../common/children.ts';
import { freePort } from '../../../common/net.ts';
import { projectRoot } from '../../../common/paths.ts';
import { logDir, startSidecar, waitHttp, type SidecarProc } from '../sidecars.ts';

export const storageApp = join(projectRoot, 'test', 'harness', 'apps', 'storage-app.ts');
export const counterExample = join(projectRoot, 'examples', 'counter', 'app.js');

function spawnApp(name: string, appPath: string, appPort: number, sidecarPort: number) {
  const fd = openSync(join(logDir, `${name}-app.log`), 'a');
  try {
    return spawnOwned(process.execPath, ['--disable-warning=ExperimentalWarning', appPath], {
      stdio: ['ignore', fd, fd],
      env: { ...process.env, PORT: String(appPort), CASTELLAN_SIDECAR_URL: `http://127.0.0.1:${sidecarPort}` },
    });
  } finally {
    closeSync(fd);
  }
}

export async function startStorageHost(name: string, cls: string, natsUrls: string[], env: NodeJS.ProcessEnv = {}, appPath = storageApp): Promise<SidecarProc> {
  const [sidecarPort, appPort] = [await freePort(), await freePort()];
  const child = spawnApp(name, appPath, appPort, sidecarPort);
  const appUrl = `http://127.0.0.1:${appPort}`;
  await waitHttp(appPath === storageApp ? `${appUrl}/pid` : `${appUrl}/healthz`, 120_000);
  const sc = await startSidecar(name, natsUrls, { CASTELLAN_ROLE: 'object-host', CASTELLAN_CLASS: cls, CASTELLAN_APP_PORT: String(appPort), ...env }, { port: sidecarPort, wait: false });
  // Generous: on a loaded 2-core machine a Node process can take long to start.
  await waitHttp(`${sc.url}/readyz`, 120_000);
  sc.app = { name: `${name}-app`, child, pid: child.pid as number, port: appPort, url: appUrl };
  return sc;
}

/** Starts the host's app again on its port (after it was killed), as a kubelet restarts a container. */
export async function restartApp(sc: SidecarProc, appPath: string, healthPath = '/healthz'): Promise<void> {
  const app = sc.app!;
  const child = spawnApp(sc.name, appPath, app.port, sc.port);
  await waitHttp(`${app.url}${healthPath}`, 120_000);
  sc.app = { ...app, child, pid: child.pid as number };
}

/** A client sidecar, waited for generously (a loaded machine starts Node processes slowly). */
export async function startPatientClient(name: string, natsUrls: string[], env: NodeJS.ProcessEnv = {}): Promise<SidecarProc> {
  const sc = await startSidecar(name, natsUrls, { CASTELLAN_ROLE: 'client', ...env }, { wait: false });
  await waitHttp(`${sc.url}/readyz`, 120_000);
  return sc;
}
