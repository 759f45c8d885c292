/** The table `npm run bench` prints (and RESULTS.md embeds, as Markdown). */
import type { BenchReport } from './result.ts';

const fmt = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '' : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));

export function rows(report: BenchReport): string[][] {
  const out = [['result', 'value', 'p50', 'p99', 'baseline', 'baseline value', 'ratio', 'target']];
  for (const r of report.results) {
    out.push([
      r.name,
      `${fmt(r.value)} ${r.unit}`,
      fmt(r.p50),
      fmt(r.p99),
      r.baseline.name,
      `${fmt(r.baseline.value)} ${r.unit}`,
      `${fmt(r.ratio)}×`,
      r.target === undefined ? '' : `${r.target.text}: ${r.target.met ? 'met' : 'MISSED'}`,
    ]);
  }
  return out;
}

export function textTable(report: BenchReport): string {
  const rs = rows(report);
  const widths = (rs[0] as string[]).map((_, i) => Math.max(...rs.map((r) => (r[i] as string).length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd();
  const lines = [line(rs[0] as string[]), widths.map((w) => '-'.repeat(w)).join('  '), ...rs.slice(1).map(line)];
  for (const s of report.skipped) lines.push(`SKIPPED ${s.scenario}: ${s.reason}`);
  for (const f of report.failed) lines.push(`FAILED  ${f.scenario}: ${f.reason}`);
  return lines.join('\n');
}

export function markdownTable(report: BenchReport): string {
  const rs = rows(report);
  (rs[0] as string[]).push('details');
  report.results.forEach((r, i) => {
    const parts = Object.entries(r.extra ?? {}).map(([k, v]) => `${k}=${v}`);
    if (r.notes !== undefined) parts.push(r.notes);
    (rs[i + 1] as string[]).push(parts.join('; '));
  });
  const esc = (c: string) => c.replace(/\|/g, '\\|');
  const lines = [`| ${(rs[0] as string[]).join(' | ')} |`, `|${(rs[0] as string[]).map(() => '---').join('|')}|`, ...rs.slice(1).map((r) => `| ${r.map(esc).join(' | ')} |`)];
  return lines.join('\n');
}
