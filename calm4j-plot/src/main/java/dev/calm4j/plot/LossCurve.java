package dev.calm4j.plot;

import org.jfree.chart.ChartFactory;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.plot.PlotOrientation;
import org.jfree.data.xy.XYSeries;
import org.jfree.data.xy.XYSeriesCollection;

import java.nio.file.Path;
import java.util.List;

/** Loss curves as PNG (JFreeChart, headless). */
public final class LossCurve {
    private LossCurve() {}

    /** {@code points}: {step, train loss, eval loss or NaN}. */
    public static void write(Path png, String title, List<double[]> points) {
        XYSeries train = new XYSeries("train loss");
        XYSeries eval = new XYSeries("eval loss");
        for (double[] p : points) {
            if (!Double.isNaN(p[1])) {
                train.add(p[0], p[1]);
            }
            if (p.length > 2 && !Double.isNaN(p[2])) {
                eval.add(p[0], p[2]);
            }
        }
        XYSeriesCollection data = new XYSeriesCollection(train);
        if (eval.getItemCount() > 0) {
            data.addSeries(eval);
        }
        JFreeChart chart = ChartFactory.createXYLineChart(title, "step", "loss (nats / target token)", data,
                PlotOrientation.VERTICAL, true, false, false);
        Png.write(png, chart, 900, 500);
    }
}
