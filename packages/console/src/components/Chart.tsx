/**
 * A uPlot time-series chart in a Preact component, with what firedrill draws over it: shaded time
 * windows (faults in effect), a horizontal threshold line and vertical marks (a breach). Times are
 * epoch seconds (uPlot's unit); a null value is a gap (e.g. a probe that got no answer).
 */
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { fmtClock, fmtTime } from "../format.js";

/** The most points a chart plots; callers thin their data to it. */
export const MAX_CHART_POINTS = 20_000;

export interface ChartWindow {
  /** Epoch seconds. */
  from: number;
  to: number;
  label: string;
}

export interface ChartOverlay {
  threshold?: { value: number; label: string } | null;
  windows?: ChartWindow[];
  /** Vertical lines, e.g. the breach. Epoch seconds. */
  marks?: { at: number; label: string }[];
}

export interface ChartSeries {
  label: string;
  stroke: string;
  /** Unit after values in the legend, e.g. "ms". */
  unit?: string;
  /** Draw points only (no line). */
  pointsOnly?: boolean;
}

export interface ChartProps {
  /** The container's data-testid. */
  testid: string;
  /** What the chart shows, for screen readers. */
  label: string;
  series: ChartSeries[];
  /** `[times (epoch s), ...values per series]`. */
  data: uPlot.AlignedData;
  overlay?: ChartOverlay;
  height?: number;
  /** Fixed width in CSS pixels; else the container's width, following window resizes. */
  width?: number;
  /** A fixed x range (epoch s), e.g. the whole run. */
  xRange?: [number, number] | null;
  legend?: boolean;
  /** Legend values follow the cursor (off in the report: on paper there is no cursor). @default true */
  liveLegend?: boolean;
  /** More attributes on the container (e.g. data-samples). */
  attrs?: Record<string, string | number>;
}

const WINDOW_FILL = "rgba(234, 88, 12, 0.13)";
const WINDOW_EDGE = "rgba(234, 88, 12, 0.55)";
const THRESHOLD = "#b91c1c";
const MARK = "#7f1d1d";

const pad = (n: number): string => String(n).padStart(2, "0");

/** Time-axis labels in local time, ISO-like, as precise as the tick spacing (`incr`, seconds) needs. */
function timeTicks(splits: number[], incr: number): string[] {
  return splits.map((s) => {
    const d = new Date(s * 1000);
    if (incr >= 86_400) return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
    if (incr >= 60) return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    if (incr >= 1) return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return fmtClock(s * 1000);
  });
}

/** The legend's time: `2026-01-31 10:00:05.123`. */
function legendTime(seconds: number): string {
  const ms = Math.round(seconds * 1000);
  return `${fmtTime(ms)}.${String(ms % 1000).padStart(3, "0")}`;
}

function font(px: number): string {
  return `${Math.round(px * uPlot.pxRatio)}px system-ui, sans-serif`;
}

function drawWindows(u: uPlot, overlay: ChartOverlay): void {
  const windows = overlay.windows ?? [];
  if (windows.length === 0) return;
  const { ctx, bbox } = u;
  const left = bbox.left;
  const right = bbox.left + bbox.width;
  ctx.save();
  ctx.font = font(10);
  ctx.textBaseline = "top";
  let lastLabelEnd = -Infinity;
  for (const w of windows) {
    const x0 = Math.max(left, u.valToPos(w.from, "x", true));
    const x1 = Math.min(right, u.valToPos(w.to, "x", true));
    if (!(x1 > x0)) continue;
    ctx.fillStyle = WINDOW_FILL;
    ctx.fillRect(x0, bbox.top, x1 - x0, bbox.height);
    ctx.fillStyle = WINDOW_EDGE;
    ctx.fillRect(x0, bbox.top, Math.max(1, uPlot.pxRatio), bbox.height);
    // Labels only where they do not overlap the previous one.
    if (w.label && x0 >= lastLabelEnd) {
      ctx.fillStyle = "#9a3412";
      const text = w.label.length > 40 ? `${w.label.slice(0, 39)}…` : w.label;
      ctx.fillText(text, x0 + 3 * uPlot.pxRatio, bbox.top + 2 * uPlot.pxRatio);
      lastLabelEnd = x0 + ctx.measureText(text).width + 8 * uPlot.pxRatio;
    }
  }
  ctx.restore();
}

function drawLines(u: uPlot, overlay: ChartOverlay): void {
  const { ctx, bbox } = u;
  const left = bbox.left;
  const right = bbox.left + bbox.width;
  const px = uPlot.pxRatio;
  ctx.save();
  ctx.font = font(11);
  const threshold = overlay.threshold;
  if (threshold) {
    const y = u.valToPos(threshold.value, "y", true);
    if (y >= bbox.top - 1 && y <= bbox.top + bbox.height + 1) {
      ctx.strokeStyle = THRESHOLD;
      ctx.lineWidth = 1.5 * px;
      ctx.setLineDash([6 * px, 4 * px]);
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(right, y);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = THRESHOLD;
      ctx.textAlign = "right";
      ctx.textBaseline = "bottom";
      ctx.fillText(threshold.label, right - 4 * px, y - 2 * px);
    }
  }
  for (const mark of overlay.marks ?? []) {
    const x = u.valToPos(mark.at, "x", true);
    if (x < left - 1 || x > right + 1) continue;
    ctx.strokeStyle = MARK;
    ctx.lineWidth = 2 * px;
    ctx.beginPath();
    ctx.moveTo(x, bbox.top);
    ctx.lineTo(x, bbox.top + bbox.height);
    ctx.stroke();
    ctx.fillStyle = MARK;
    ctx.textBaseline = "top";
    const text = mark.label.length > 60 ? `${mark.label.slice(0, 59)}…` : mark.label;
    const width = ctx.measureText(text).width;
    // Written on the side of the line that has room.
    const leftSide = x + width + 6 * px > right;
    ctx.textAlign = leftSide ? "right" : "left";
    ctx.fillText(text, leftSide ? x - 4 * px : x + 4 * px, bbox.top + 14 * px);
  }
  ctx.restore();
}

/** A uPlot chart; re-plots when `data` changes, redraws the overlay when it changes. */
export function Chart(props: ChartProps) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const overlay = useRef<ChartOverlay>(props.overlay ?? {});
  overlay.current = props.overlay ?? {};
  const xRange = useRef(props.xRange ?? null);
  xRange.current = props.xRange ?? null;
  const height = props.height ?? 220;
  const seriesKey = props.series.map((s) => s.label).join("\u0000");

  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const widthOf = () => props.width ?? Math.max(240, Math.floor(el.clientWidth || 600));
    const opts: uPlot.Options = {
      width: widthOf(),
      height,
      legend: { show: props.legend ?? true, live: props.liveLegend ?? true },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: {
          time: true,
          range: (_u, min, max) => {
            const fixed = xRange.current;
            if (fixed) return [fixed[0], fixed[1]];
            if (min === max) return [min - 30, max + 30];
            return [min, max];
          },
        },
        y: {
          range: (_u, min, max) => {
            const t = overlay.current.threshold?.value;
            let lo = min ?? 0;
            let hi = max ?? 1;
            if (t !== undefined && Number.isFinite(t)) {
              lo = Math.min(lo, t);
              hi = Math.max(hi, t);
            }
            lo = Math.min(lo, 0);
            if (hi <= lo) hi = lo + 1;
            return [lo, hi + (hi - lo) * 0.08];
          },
        },
      },
      series: [
        { value: (_u: uPlot, v: number | null) => (v === null || v === undefined ? "—" : legendTime(v)) },
        ...props.series.map((s) => ({
          label: s.label,
          stroke: s.stroke,
          width: 1.5,
          spanGaps: false,
          ...(s.pointsOnly ? { paths: () => null, points: { show: true, size: 5, fill: s.stroke } } : { points: { show: false } }),
          value: (_u: uPlot, v: number | null) => (v === null || v === undefined ? "—" : `${Number.isInteger(v) ? v : v.toFixed(2)}${s.unit ? ` ${s.unit}` : ""}`),
        })),
      ],
      axes: [{ values: (_u, splits, _axis, _space, incr) => timeTicks(splits, incr) }, { size: 56 }],
      hooks: {
        drawClear: [(u) => drawWindows(u, overlay.current)],
        draw: [(u) => drawLines(u, overlay.current)],
      },
    };
    const chart = new uPlot(opts, props.data, el);
    plot.current = chart;
    let timer: number | undefined;
    const onResize = () => {
      window.clearTimeout(timer);
      timer = window.setTimeout(() => chart.setSize({ width: widthOf(), height }), 150);
    };
    if (props.width === undefined) window.addEventListener("resize", onResize);
    return () => {
      window.removeEventListener("resize", onResize);
      window.clearTimeout(timer);
      chart.destroy();
      plot.current = null;
    };
    // The chart is rebuilt only when its series or size change; data and overlay are updated in place.
  }, [seriesKey, height, props.width]);

  useEffect(() => {
    plot.current?.setData(props.data);
  }, [props.data]);

  useEffect(() => {
    plot.current?.redraw(false, true);
  }, [props.overlay, props.xRange?.[0], props.xRange?.[1]]);

  return <div class="chart" data-testid={props.testid} role="img" aria-label={props.label} ref={host} {...props.attrs} />;
}

/** Keeps at most `max` items, dropping evenly spread ones (never the last). */
export function thin<T>(items: readonly T[], max: number = MAX_CHART_POINTS): T[] {
  if (items.length <= max) return items.slice();
  const step = items.length / max;
  const out: T[] = [];
  for (let i = 0; i < max - 1; i++) out.push(items[Math.floor(i * step)]!);
  out.push(items[items.length - 1]!);
  return out;
}
