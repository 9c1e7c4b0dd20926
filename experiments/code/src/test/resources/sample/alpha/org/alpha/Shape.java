package org.alpha;

/** A shape. */
public interface Shape {
    /**
     * Returns the area of this shape.
     */
    double area();

    /**
     * Returns the perimeter of this shape in the given unit, rounded.
     */
    default long roundedPerimeter(double unit) {
        double p = perimeter() / unit;
        return Math.round(p);
    }

    /** Returns the perimeter of this shape. */
    double perimeter();

    /** A square. */
    final class Square implements Shape {
        private final double side;

        Square(double side) {
            this.side = side;
        }

        /**
         * Computes the area as the side squared.
         */
        @Override
        public double area() {
            double s = side;
            return s * s;
        }

        /**
         * <p>Computes the perimeter as four times the side.</p>
         */
        @Override
        public double perimeter() {
            double s = side;
            return 4 * s;
        }
    }
}
