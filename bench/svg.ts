// The little SVG the bench charts need, written as text: no dependency, no fonts or tools to install,
// and the file opens in any browser or in GitHub's Markdown.

export const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"';

export function escapeXml(s: string): string {
  return s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

const round = (n: number): string => (Number.isInteger(n) ? String(n) : n.toFixed(1));

export function svgDocument(width: number, height: number, title: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${round(height)}" viewBox="0 0 ${width} ${round(height)}" ${FONT} font-size="12">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${width}" height="${round(height)}" fill="#ffffff"/>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

export interface TextOptions {
  anchor?: 'start' | 'middle' | 'end';
  size?: number;
  weight?: 'bold';
  fill?: string;
}

export function text(x: number, y: number, content: string, o: TextOptions = {}): string {
  const attrs = [
    `x="${round(x)}"`,
    `y="${round(y)}"`,
    o.anchor === undefined ? '' : `text-anchor="${o.anchor}"`,
    o.size === undefined ? '' : `font-size="${o.size}"`,
    o.weight === undefined ? '' : `font-weight="${o.weight}"`,
    `fill="${o.fill ?? '#1a202c'}"`,
  ].filter((a) => a !== '');
  return `<text ${attrs.join(' ')}>${escapeXml(content)}</text>`;
}

export function rect(x: number, y: number, w: number, h: number, fill: string, tooltip?: string): string {
  const shape = `<rect x="${round(x)}" y="${round(y)}" width="${round(Math.max(0, w))}" height="${round(h)}" fill="${fill}"`;
  return tooltip === undefined ? `${shape}/>` : `${shape}><title>${escapeXml(tooltip)}</title></rect>`;
}

export function line(x1: number, y1: number, x2: number, y2: number, stroke: string, dashed = false): string {
  return `<line x1="${round(x1)}" y1="${round(y1)}" x2="${round(x2)}" y2="${round(y2)}" stroke="${stroke}"${dashed ? ' stroke-dasharray="4 3"' : ''}/>`;
}

export function polyline(points: [number, number][], stroke: string, dashed = false): string {
  const at = points.map(([x, y]) => `${round(x)},${round(y)}`).join(' ');
  return `<polyline points="${at}" fill="none" stroke="${stroke}" stroke-width="2"${dashed ? ' stroke-dasharray="5 3"' : ''}/>`;
}

export function circle(x: number, y: number, fill: string, tooltip: string): string {
  return `<circle cx="${round(x)}" cy="${round(y)}" r="3" fill="${fill}"><title>${escapeXml(tooltip)}</title></circle>`;
}

/** 1.2k, 35k, 1.6M: axis labels and bar values. */
export function compact(n: number): string {
  if (!Number.isFinite(n)) return '-';
  const a = Math.abs(n);
  if (a >= 1e6) return `${Number((n / 1e6).toPrecision(3))}M`;
  if (a >= 1e3) return `${Number((n / 1e3).toPrecision(3))}k`;
  if (a >= 100 || Number.isInteger(n)) return String(Math.round(n));
  return String(Number(n.toPrecision(2)));
}

export interface Scale {
  at(v: number): number;
  ticks: number[];
}

/** 0 to a round maximum above `max`, five or so ticks. */
export function linearScale(max: number, from: number, to: number): Scale {
  const top = max > 0 ? max : 1;
  const raw = top / 5;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 2.5, 5, 10].find((m) => m * magnitude >= raw) ?? 10) * magnitude;
  const end = Math.ceil(top / step) * step;
  const ticks = Array.from({ length: Math.round(end / step) + 1 }, (_, i) => i * step);
  return { at: (v) => from + ((to - from) * v) / end, ticks };
}

/** Whole powers of ten around [min, max]; values at or below zero sit at the start. */
export function logScale(min: number, max: number, from: number, to: number): Scale {
  const lo = Math.floor(Math.log10(Math.max(min, 1e-9)));
  const hi = Math.max(lo + 1, Math.ceil(Math.log10(Math.max(max, 1e-9))));
  const ticks = Array.from({ length: hi - lo + 1 }, (_, i) => 10 ** (lo + i));
  return { at: (v) => (v <= 0 ? from : from + ((to - from) * (Math.log10(v) - lo)) / (hi - lo)), ticks };
}
