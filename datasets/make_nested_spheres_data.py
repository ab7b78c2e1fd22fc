"""``python -m datasets.make_nested_spheres_data [--data_dir DIR]``: write the data files."""

from datasets import nested_spheres
from datasets.command import make_data


def main(argv=None):
    make_data(
        'python -m datasets.make_nested_spheres_data',
        __doc__,
        lambda args: nested_spheres.generate(args.data_dir),
        lambda args: f'{nested_spheres.folder(args.data_dir)}/{{train,val}}.npz',
        argv=argv,
    )


if __name__ == '__main__':
    main()
