"""The images a run reads: one interface over a tensor, the decoded cache on disk and a dataset."""
import numpy as np
import pytest
import torch

from coreaug.data.image_cache import DiskImages
from coreaug.data.images import DatasetImages, TensorImages, as_images, consecutive, device_batches


def _sources(tmp_path, n=10, shape=(3, 4, 4)):
    pixels = torch.from_numpy(np.arange(n * int(np.prod(shape)), dtype=np.int64).astype(np.uint8).reshape(n, *shape))
    pixels.numpy().tofile(tmp_path / "images.u8")
    pairs = [(image, 0) for image in pixels]
    return pixels, [TensorImages(pixels), DiskImages(str(tmp_path / "images.u8"), n, shape), DatasetImages(pairs)]


def test_every_source_reads_the_same_rows_views_and_batches(tmp_path):
    pixels, sources = _sources(tmp_path)
    for images in sources:
        assert len(images) == 10 and tuple(images.shape) == (10, 3, 4, 4), images
        assert torch.equal(images.read(np.array([7, 2, 2])), pixels[[7, 2, 2]]), images
        assert torch.equal(images.read(slice(3, 5)), pixels[3:5]), images
        assert torch.equal(images[torch.tensor([9, 1, 4])][1:].read(np.array([1, 0])), pixels[[4, 1]]), images
        assert torch.equal(torch.cat(list(images.batches(consecutive(10, 4)))), pixels), images
        assert torch.equal(torch.cat(list(device_batches(images, 3, "cpu"))), pixels), images
        moved = images.to("cpu")
        assert isinstance(moved, TensorImages) and torch.equal(moved.tensor, pixels), images


def test_a_tensor_reads_rows_by_index_tensors_on_its_device_and_the_others_by_numpy(tmp_path):
    _, (in_memory, on_disk, dataset) = _sources(tmp_path)
    assert in_memory.rows_device == torch.device("cpu")
    assert on_disk.rows_device is None and dataset.rows_device is None


def test_plain_tensors_arrays_and_datasets_are_wrapped_at_the_boundary(tmp_path):
    pixels, (_, on_disk, _) = _sources(tmp_path)
    assert isinstance(as_images(pixels), TensorImages) and isinstance(as_images(pixels.numpy()), TensorImages)
    assert as_images(on_disk) is on_disk
    assert isinstance(as_images([(image, 0) for image in pixels]), DatasetImages)


def test_streaming_is_refused_for_a_rule_that_mixes_copies_with_partners(tmp_path):
    import coreaug
    from test_data_image_folder import write_split

    write_split(tmp_path / "data", "train", per_class=4)
    write_split(tmp_path / "data", "val", per_class=1)
    config = coreaug.TrainConfig(dataset=str(tmp_path / "data"), image_size=12, model="cnn", epochs=1, quiet=True,
                                 workers=0, stream="always", strategy="crust", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match=r"strategy crust\) needs the images in memory"):
        coreaug.train(config)
