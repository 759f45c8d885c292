/**
 * A small SVG chart of latency distributions, no dependencies: for every
 * latency result, two rows (Castellan, baseline), each a box from p25 to p75,
 * whiskers from p10 to p99, a tick at p50 — on a shared logarithmic ms axis.
 */
import type { BenchReport } from './result.ts';
import type { Distribution } from './stats.ts';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function latencySvg(report: BenchReport): string {
  const rows: { label: string; d: Distribution; base: boolean }[] = [];
  for (const r of report.results) {
    if (r.dist === undefined || r.baseline.dist === undefined) continue;
    rows.push({ label: r.name, d: r.dist, base: false }, { label: `baseline: ${r.baseline.name}`, d: r.baseline.dist, base: true });
  }
  const W = 1000;
  const left = 400;
  const right = 30;
  const rowH = 22;
  const top = 40;
  const H = top + rows.length * rowH + 40;
  const all = rows.flatMap((r) => [r.d.p10, r.d.p99]).filter((v) => v > 0 && Number.isFinite(v));
  const lo = 10 ** Math.floor(Math.log10(Math.min(...all, 1)));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...all, 10)));
  const x = (v: number) => Math.round(10 * (left + ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (W - left - right))) / 10;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">Latency distributions (ms, log scale): box p25–p75, whiskers p10–p99, tick p50 — mode ${esc(report.mode)}</text>`,
  ];
  for (let e = Math.log10(lo); e <= Math.log10(hi); e++) {
    const xv = x(10 ** e);
    out.push(`<line x1="${xv}" y1="${top - 5}" x2="${xv}" y2="${H - 30}" stroke="#ddd"/>`, `<text x="${xv}" y="${H - 15}" text-anchor="middle">${10 ** e >= 1 ? 10 ** e : (10 ** e).toFixed(-e)}</text>`);
  }
  rows.forEach((r, i) => {
    const y = top + i * rowH + rowH / 2;
    const colour = r.base ? '#9aa5b1' : '#1f6feb';
    out.push(
      `<text x="${left - 8}" y="${y + 4}" text-anchor="end" fill="${r.base ? '#555' : '#000'}">${esc(r.label.length > 60 ? `${r.label.slice(0, 57)}…` : r.label)}</text>`,
      `<line x1="${x(r.d.p10)}" y1="${y}" x2="${x(r.d.p99)}" y2="${y}" stroke="${colour}"/>`,
      `<rect x="${x(r.d.p25)}" y="${y - 6}" width="${Math.max(1, x(r.d.p75) - x(r.d.p25))}" height="12" fill="${colour}" fill-opacity="0.5" stroke="${colour}"/>`,
      `<line x1="${x(r.d.p50)}" y1="${y - 8}" x2="${x(r.d.p50)}" y2="${y + 8}" stroke="#000" stroke-width="2"/>`,
    );
    if (r.base) out.push(`<line x1="10" y1="${y + rowH / 2}" x2="${W - 10}" y2="${y + rowH / 2}" stroke="#eee"/>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
