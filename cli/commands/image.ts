/**
 * `castellan image build [--load]` (SPEC §4): builds castellan:dev and
 * castellan-examples:dev without Docker (local/image/build.ts) into
 * .castellan/images, and with --load imports them into the real nodes of the
 * local cluster that `castellan cluster up` started from this directory.
 */
import { join } from 'node:path';
import { KubeCluster } from '../../local/kube-cluster.ts';
import { buildImages } from '../../local/image/build.ts';
import { parseFlags, UsageError } from '../usage.ts';

const help = `Usage: castellan image build [--load]

Builds the Castellan image (castellan:dev: Node 24, the sources compiled to
JavaScript, production dependencies only, user 65532, no shell, npm or compiler)
and the examples image (castellan-examples:dev: "node examples/counter/app.js",
examples/chat/app.js, examples/jobs/worker.js) as image archives in
.castellan/images, without Docker, plus castellan-nats:dev (the pinned nats-server,
for charts/castellan/examples/nats-local.yaml). Prints each tag, archive and size.
Nothing is rebuilt when no input changed since the last build (sources,
examples, package files, the Node and nats-server binaries).

  --load      also import all three into every real node of the local cluster
              (castellan cluster up); the chart then takes them with
              --set image.repository=castellan,image.tag=dev
  -h, --help  show this help

To push to a registry, load an archive with "docker load -i FILE" (or
"skopeo copy docker-archive:FILE docker://REGISTRY/castellan:TAG"), or build
the Dockerfile.`;

export async function run(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, { load: { type: 'boolean' } }, help, true);
  if (flags === undefined) return 0;
  const [action, ...extra] = flags.positionals;
  if (action !== 'build' || extra.length > 0) throw new UsageError(`expected "build"\n\n${help}`);
  const root = join(process.cwd(), '.castellan');
  let cluster: KubeCluster | undefined;
  if (flags.values.load === true) {
    cluster = KubeCluster.attach({ name: 'castellan', workdir: join(root, 'cluster', 'kwok'), kubeconfig: join(root, 'cluster', 'kubeconfig') });
    if (cluster.real.nodes.length === 0) throw new UsageError('--load needs a local cluster with real nodes: run "castellan cluster up --nodes N" first');
  }
  const images = await buildImages(join(root, 'images'));
  if (images.cached === true) process.stdout.write('inputs unchanged since the last build: kept the archives\n');
  for (const img of images) process.stdout.write(`${img.tag}\t${img.archive}\t${(img.bytes / 1024 / 1024).toFixed(1)} MiB\n`);
  if (cluster !== undefined) {
    for (const img of images) await cluster.real.importImage(img.archive);
    process.stdout.write(`loaded into ${cluster.real.nodes.map((n) => n.name).join(', ')}\n`);
  }
  return 0;
}
